//! XDP and AF_XDP: the in-house BPF assembler, the classifier programs, their loader (bpf
//! syscalls, attached through a bpf link so they vanish with the process) and AF_XDP sockets.
//!
//! Nothing here needs clang or libbpf: the classifier is emitted as BPF instructions by Rust
//! code (`program.rs`) and loaded with the `bpf(2)` system call (`sys.rs`).

pub mod asm;
pub mod program;
pub mod ring;
pub mod socket;
pub mod sys;
pub mod umem;
