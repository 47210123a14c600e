//! The checks, one file a phase family. Each returns [`crate::report::Check`]s; none prints.

pub mod audit;
pub mod elf;
pub mod gpucode;
pub mod host;
pub mod image;
pub mod imagefs;
pub mod manylinux;
pub mod offload;
pub mod pep440;
pub mod resolve;
pub mod runtime;
pub mod serve;
pub mod source;
pub mod wheel;

pub use crate::report::{check, check_when};
