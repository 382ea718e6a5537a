//! The parsers of tcpkali, compiled on their own for fuzzing: the modules
//! are the binary's own source files, included by path, in the same module
//! tree as in the binary so that their `crate::` paths hold.

#![allow(dead_code)]

#[path = "../../src/cli"]
pub mod cli {
    pub mod units;
}

#[path = "../../src/content"]
pub mod content {
    pub mod escape;
    pub mod expr;
    pub mod regexgen;
}

#[path = "../../src/proto"]
pub mod proto {
    pub mod ws;
}

pub use cli::units;
pub use content::expr;
pub use proto::ws;
