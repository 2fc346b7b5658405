//! Checks every gRPC server of ours must pass: health and reflection.

use tonic::transport::Channel;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

/// Asserts that health answers SERVING for each of `services` ("" is the
/// server as a whole) over `channel`, and returns the service names that
/// reflection lists there.
pub async fn serving_and_listed(channel: Channel, services: &[&str]) -> Vec<String> {
    let mut health = HealthClient::new(channel.clone());
    for service in services {
        let answer = health.check(HealthCheckRequest { service: (*service).into() }).await.unwrap().into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}
