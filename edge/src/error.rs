//! Why a frame could not be turned into an edge map.

/// Every way [`process`](crate::process) can fail. None of them panics the caller.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The input has no bytes at all.
    #[error("input is empty")]
    Empty,
    /// The input stops before the image does.
    #[error("input is truncated: {reason}")]
    Truncated {
        /// What was missing, as the decoder saw it.
        reason: String,
    },
    /// The input is a known format but its data is damaged.
    #[error("input is corrupt: {reason}")]
    Corrupt {
        /// The decoder's description of the damage.
        reason: String,
    },
    /// The input is not a JPEG or PNG the kernel can read (or a variant it does not support).
    #[error("unsupported input format: {what}")]
    UnsupportedFormat {
        /// What was recognised, or why it was refused.
        what: String,
    },
    /// The header declares a zero width or height.
    #[error("image has zero size ({width}x{height})")]
    ZeroSize {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The header declares more pixels than the configured limit; nothing was allocated.
    #[error("image is {width}x{height}, over the limit of {limit} pixels")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The `max_pixels` in force.
        limit: u64,
    },
    /// A parameter is out of range; see [`EdgeParams::validate`](crate::EdgeParams::validate).
    #[error("invalid parameter {name}: {reason}")]
    InvalidParams {
        /// The field at fault.
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The encoder failed (should not happen for a valid edge map; kept as an error rather
    /// than a panic).
    #[error("encoding the edge map failed: {reason}")]
    Encode {
        /// The encoder's message.
        reason: String,
    },
}

impl EdgeError {
    /// True when the input itself is at fault, so retrying the same bytes cannot succeed:
    /// the job should be recorded as failed rather than redelivered.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            EdgeError::Encode { .. } | EdgeError::InvalidParams { .. }
        )
    }
}
