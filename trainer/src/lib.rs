//! `tinygpt-train`: trains tinygpt models with tch/libtorch (CUDA or CPU), evaluates them, and
//! exports `.tgpt` files that the runtime runs with the same numbers.

pub mod config;
pub mod cuda;
pub mod data;
pub mod evalchat;
pub mod export;
pub mod mkl;
pub mod model;
pub mod optim;
pub mod plot;
pub mod rl;
pub mod sft;
pub mod tasks;
pub mod train;
pub mod tune;
