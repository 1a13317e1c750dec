//! vGPU types and instances.
//!
//! It will derive vGPU types (framebuffer size, maximum instances, channels) from the physical
//! GPU, create instances (UUID, type, GFID) and keep their definitions on disk the way `mdevctl`
//! does. Nothing is implemented yet.
