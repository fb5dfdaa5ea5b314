//! [`DataAccessRecorder`]: the agent's call records and logs, stored through [`DataAccess`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use shared::Call;

use crate::data_access::DataAccess;
use crate::recorder::{CallRecorder, RecordError};

/// A [`CallRecorder`] writing to `DataAccess::call_started` / `call_finished`. The agent calls it
/// from its background record writer, never on the response path.
#[derive(Clone)]
pub struct DataAccessRecorder(pub Arc<dyn DataAccess>);

#[async_trait]
impl CallRecorder for DataAccessRecorder {
    async fn call_started(&self, call: &Call) -> Result<(), RecordError> {
        Ok(self.0.call_started(call).await?)
    }

    async fn call_finished(&self, call: &Call, log: Bytes) -> Result<(), RecordError> {
        Ok(self.0.call_finished(call, &String::from_utf8_lossy(&log)).await?)
    }
}
