//! Tests of the queue and object-store adapters against real services:
//! RabbitMQ at 127.0.0.1:5672 (guest/guest; `NEUROBATCH_TEST_AMQP_URL`
//! overrides) and the S3-protocol server scripts/test.sh starts
//! (`NEUROBATCH_TEST_S3_ENDPOINT`). Every test declares its own exchanges and
//! queues (unique prefix) or bucket, and deletes them at the end. One test
//! binary, so the heavy SDKs are linked once.

#[path = "support/silent_proxy.rs"]
mod silent_proxy;

mod services {
    pub mod common;
    mod queue_amqp;
    mod queue_memory;
    pub mod scenarios;
    mod storage;
}
