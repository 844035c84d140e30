//! dcache's Jepsen-style tooling: operation histories and a linearizability
//! checker for per-key registers (the fault harness builds on them).
