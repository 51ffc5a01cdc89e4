pub mod overview;
pub mod view;
