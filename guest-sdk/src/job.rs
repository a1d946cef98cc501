//! Conveniences on the job, device and error records of the WIT contract.

use crate::{Device, Job, JobError};

impl Job {
    /// The value of the job parameter `name`, if the registry posted one.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The job's device id, or an `unsupported` error when the job has none.
    pub fn require_device(&self) -> Result<&str, JobError> {
        self.device_id
            .as_deref()
            .ok_or_else(|| JobError::Unsupported(format!("job {} names no device", self.id)))
    }

    /// The job's time range, or an `unsupported` error when it has none.
    pub fn require_time_range(&self) -> Result<&crate::TimeRange, JobError> {
        self.time_range
            .as_ref()
            .ok_or_else(|| JobError::Unsupported(format!("job {} has no time range", self.id)))
    }
}

impl Device {
    /// A device with an id and a name; the other fields start empty.
    pub fn new(device_id: impl Into<String>, name: impl Into<String>) -> Self {
        Device {
            device_id: device_id.into(),
            name: name.into(),
            manufacturer: String::new(),
            model: String::new(),
            latitude: None,
            longitude: None,
            capabilities: Vec::new(),
        }
    }

    /// Sets the manufacturer and model.
    pub fn with_make(mut self, manufacturer: impl Into<String>, model: impl Into<String>) -> Self {
        self.manufacturer = manufacturer.into();
        self.model = model.into();
        self
    }

    /// Sets the position in WGS 84 degrees.
    pub fn with_position(mut self, latitude: f64, longitude: f64) -> Self {
        self.latitude = Some(latitude);
        self.longitude = Some(longitude);
        self
    }

    /// Sets what the device can do for the registry (`thumbnail`, `media`).
    pub fn with_capabilities<I, S>(mut self, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }
}

impl From<crate::output::OutputError> for JobError {
    fn from(error: crate::output::OutputError) -> Self {
        JobError::Failed(format!("output: {error}"))
    }
}

impl From<std::io::Error> for JobError {
    fn from(error: std::io::Error) -> Self {
        JobError::Failed(format!("output: {error}"))
    }
}
