//! `sim`: a software model of a Hopper-class FIFO (the embedded default backend).
