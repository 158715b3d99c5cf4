//! Standalone entry of the executor agent: build.rs compiles this file
//! with `rustc` into a static binary that the library embeds.

// The agent uses only part of the protocol module (the server's half,
// decoders of frames and encoders of requests, stays unused here).
#![allow(dead_code)]

#[path = "protocol/mod.rs"]
mod protocol;

#[path = "agent/mod.rs"]
mod agent;

fn main() {
    std::process::exit(agent::main())
}
