//! Problem codes: the shared `cell_resolver::ProblemCode` (`CELL0001`…), re-exported so the
//! index, `cell_remote!` and cell-lsp speak the same codes and words.

pub use cell_resolver::{ProblemCode, UnknownProblemCode};
