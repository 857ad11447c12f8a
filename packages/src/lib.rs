//! Packages and version alignment: pure logic over files, no I/O beyond
//! reading what it is given.
//!
//! * [`lockfile`]: what a source's lockfiles pin, per ecosystem.
//! * [`drift`]: versions that docs claim and the lockfiles contradict.
//! * [`context`]: the repo context package and its validation.
//! * [`topic`]: topic packages, their citations and staleness.
//! * [`draft`]: extractive drafts of topic packages.

pub mod context;
pub mod draft;
pub mod drift;
pub mod lockfile;
pub mod topic;
