//! `killswitch-fleet`: the fleet-scale load tool (issue #7; being built).

fn main() {}
