//! servocell control core (DESIGN.md §4).
#![no_std]
