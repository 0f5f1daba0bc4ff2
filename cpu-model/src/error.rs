//! Errors of the CPU model itself (as opposed to guest faults, which are outcomes of a step).

use thiserror::Error;
use unicorn_engine::unicorn_const::uc_error;

/// A failure to set up or drive a Unicorn engine. These are simulator bugs or impossible
/// layouts, never guest behaviour: a guest fault is a [`crate::Fault`].
#[derive(Debug, Error)]
pub enum CpuError {
    /// A Unicorn API call failed.
    #[error("unicorn: {call} failed: {err:?}")]
    Unicorn {
        /// The API call that failed.
        call: &'static str,
        /// Unicorn's error code.
        err: uc_error,
    },
    /// A memory layout that cannot be mapped.
    #[error("bad layout: {0}")]
    Layout(String),
    /// A store the TSO memory cannot take (outside its region or saved windows).
    #[error(transparent)]
    Tso(#[from] crate::tso::TsoError),
}

/// Adds the name of the failing call to a Unicorn result.
pub(crate) trait UcContext<T> {
    fn ctx(self, call: &'static str) -> Result<T, CpuError>;
}

impl<T> UcContext<T> for Result<T, uc_error> {
    fn ctx(self, call: &'static str) -> Result<T, CpuError> {
        self.map_err(|err| CpuError::Unicorn { call, err })
    }
}
