//! A run rendered for people and machines: the run view (`run`), report.md (`markdown`),
//! report.html (`html`), report.junit.xml (`junit`). The run directory's files are written by `bundle::files`.
//! The checks and verdicts they render live in `report`; nothing below `render` depends on it.

pub mod html;
pub mod junit;
pub mod markdown;
pub mod run;
