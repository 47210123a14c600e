//! The checks, one file a phase family. Each returns [`crate::report::Check`]s; none prints.

pub mod audit;
pub mod bundle;
pub mod catalog;
pub mod elf;
pub mod host;
pub mod image;
pub mod imagefs;
pub mod manylinux;
pub mod pep440;
pub mod resolve;
pub mod runtime;
pub mod serve;
pub mod source;
pub mod wheel;

use crate::report::{Check, Status};

/// A check from the catalog, by id, with its catalog title.
pub fn check(id: &str, status: Status, evidence: impl Into<String>) -> Check {
    Check::new(id, catalog::title(id), status, evidence)
}

/// Pass or fail by condition, title from the catalog.
pub fn check_when(ok: bool, id: &str, evidence: impl Into<String>) -> Check {
    check(id, if ok { Status::Pass } else { Status::Fail }, evidence)
}
