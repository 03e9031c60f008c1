//! Helpers shared by integration tests and benches.
pub mod cluster;
pub mod history;
pub mod membership_sim;
pub mod turmoil_net;
