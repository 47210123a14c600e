//! The operations: what a command (`src/commands/`) or a phase of `forge build`
//! (`src/phases/`) calls to do the work. Each takes options and returns a typed result; none
//! parses arguments, and the checks they run live in `src/check/`.
//!
//! - [`drive`]: the Docker build of the wheel stage under the log monitor (stop within a
//!   second on a wrong configuration), the wheels copied out.
//! - [`export`]: the engine's image stream -> parallel gzip/zstd + SHA256 in one pass; split
//!   parts; the archive read back.
//! - [`runtime`]: phase 5, the GPU runtime probe in a container.
//! - [`serve`]: phases 6-7, the vLLM server, a request, and memory safety.
//! - [`plan`]: a recipe resolved into the plan of a run (pure), and its checks.
//! - [`rehearse`]: `forge build --rehearse`, the stand-in base image and wheels.
//! - [`sbom`]: the image's CycloneDX 1.6 SBOM.
//! - [`registry`]: pushing the image; credentials from the docker config.
//! - [`transfer`]: an image streamed from one engine into another (build engine -> GPU engine).

pub mod drive;
pub mod export;
pub mod plan;
pub mod registry;
pub mod rehearse;
pub mod runtime;
pub mod sbom;
pub mod serve;
pub mod transfer;
