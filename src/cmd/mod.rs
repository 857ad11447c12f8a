//! One file per command: each converts its arguments, calls the plane (or,
//! for registry edits and the audit log, the registry store) and prints.

pub mod check;
pub mod demo;
pub mod docs;
pub mod index;
pub mod packages;
pub mod query;
pub mod registry;
pub mod serve;
