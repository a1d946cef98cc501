use corral_guest::{Device, Integration, Job, JobError, Outcome, http, output::Output, settings};

struct MyVms;

impl Integration for MyVms {
    fn discover(_job: Job) -> Result<Vec<Device>, JobError> {
        // List the system's cameras: guests/http-vms reads camera-sim's /vms/v2/cameras.
        Err(JobError::Unsupported("discovery is not written yet".into()))
    }

    fn thumbnail(job: Job) -> Result<(), JobError> {
        let base = settings::require("base-url")?;
        let device = job.require_device()?;
        // A 404 becomes Unsupported, which cancels the job: check the path
        // against the camera system's API (here camera-sim's).
        let url = format!("{base}/vms/v2/cameras/{device}/snapshot.jpg");
        let response = http::get(&url)?.ok()?;
        let mut out = Output::create("snapshot.jpg", "image/jpeg")?;
        out.splice(response, |_| {})?; // the bytes never enter guest memory
        out.finish()?;
        Ok(())
    }

    fn extract_media(_job: Job) -> Result<Outcome, JobError> {
        // Splice the recording into an output: guests/http-vms shows how.
        Err(JobError::Unsupported("no recordings yet".into()))
    }
}

corral_guest::export!(MyVms);
