//! The parsers of tcpkali, compiled on their own for fuzzing: the modules
//! are the binary's own source files, included by path.

#![allow(dead_code)]

#[path = "../../src/content.rs"]
pub mod content;
#[path = "../../src/expr.rs"]
pub mod expr;
#[path = "../../src/regexgen.rs"]
pub mod regexgen;
#[path = "../../src/units.rs"]
pub mod units;
#[path = "../../src/ws.rs"]
pub mod ws;
