//! The HTTP core driven end to end over real sockets with a stub app that never touches Python
//! (`support::stub`): what the core does by itself, without a bridge, in milliseconds. One module
//! per capability; what needs a real process or what the app sees in environ/scope stays in the
//! Python suites (README, "Tests").

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod corpus;
mod framing;
mod limits;
mod proxy;
mod refusals;
mod static_files;
