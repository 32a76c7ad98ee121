//! `schedule`: Korean business days and what is due at an instant. Pure — the cron tick that
//! drives it lives with the daemon; this module only answers "what is due now?".
pub mod calendar;
pub mod due;

pub use calendar::Calendar;
pub use due::{deadline, due_reminders, status, Deadline, StatusRow, Window};
