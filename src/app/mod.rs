pub mod alerts;
pub mod drill;
pub mod keymap;
pub mod overview;
pub mod progress;
pub mod run;
pub mod state;
pub mod view;
