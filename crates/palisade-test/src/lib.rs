//! Test mocks and helpers shared by palisade's crates (not published).
