//! One file a subcommand: each maps its arguments onto the phase code and the printer.

pub mod build;
pub mod runs;
