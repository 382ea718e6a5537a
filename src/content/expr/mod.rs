//! The `\{…}` message expression language.
//!
//! Message text is a sequence of literal runs and expressions: `\{` starts
//! an expression and the matching `}` ends it. `\\` is a two-byte literal
//! (so `\\{x}` is literal text) and a lone `}` is literal.
//!
//! Inside an expression, whitespace between tokens is ignored:
//!
//! * `<path>`: the file's bytes, read once at parse time;
//! * `raw "…"`, `raw <path>`, `raw {expr}`: a part that is never
//!   WebSocket-framed (`expr` may be anything but a `ws.*` frame);
//! * `global.re R`: one random string from R, drawn once at parse time;
//! * `connection.re R`, `connection.uid`, `connection.ptr`: per connection;
//! * `re R`, `message.marker`: per message;
//! * `connection.uid % n`, `connection.ptr % n`: the value modulo n (n > 0),
//!   in decimal;
//! * `ws.OP payload* flag*`: a complete WebSocket frame, where OP is one of
//!   `continuation cont text binary close ping pong`, a payload is a quoted
//!   string or `<path>` (payloads concatenate), and a flag is `rsv1`,
//!   `rsv2`, `rsv3` or `...` (clears FIN).
//!
//! Quoted strings (`"…"`, `\"` for a quote) are always unescaped with
//! [`crate::content::escape::unescape`]; with `-e` the literal runs are unescaped
//! too. A quoted string is unescaped once only, with or without `-e`, and
//! file contents never are.
//!
//! A regex R runs from its first non-blank character to the `}` that closes
//! the expression (braces of `{n,m}` are balanced; `\}` or `[}]` is a
//! literal `}`), so trailing blanks are part of it.
//!
//! `pieces` holds what a message is made of and the length accounting
//! that both the parser (for its size limits) and the renderer (for
//! WebSocket frame headers) rely on. Reading text into pieces (`parse`)
//! happens once, at startup; writing pieces out as bytes (`render`)
//! happens per connection or per message on the workers.

mod parse;
mod pieces;
mod render;

pub use pieces::*;
pub use render::{stamp_marker, ws_auto_frame};
