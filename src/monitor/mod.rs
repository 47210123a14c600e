//! The live build monitor: phase 2 rules over a build log, line by line.
//!
//! `rules` is pure (bytes in, findings out); `scan` runs it over a finished log with bounded
//! memory; `tail` follows a log another process is writing and stops that process on the first
//! fatal finding.

pub mod diagnose;
pub mod line;
pub mod rules;
pub mod scan;
pub mod tail;
pub mod ui;

#[cfg(test)]
mod corpus;

pub use rules::{Finding, Monitor};
