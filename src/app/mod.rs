pub mod overview;
pub mod state;
pub mod view;
