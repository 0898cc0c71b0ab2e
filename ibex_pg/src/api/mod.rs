//! The SQL surface of the extension: thin adapters over ibex_engine. docs/sql.md documents each
//! function; volatility follows what the result depends on (settings or the clock make a
//! function STABLE; pure functions of their arguments are IMMUTABLE).
mod embed;
mod info;
mod pii;
mod scoring;
mod tokens;
mod wake;
