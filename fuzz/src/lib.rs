//! Helpers shared by the fuzz targets. Nothing here calls rsgi: these are the independent
//! oracles the targets compare rsgi against.

pub mod wire;
