//! The registry steps of the card path (`BeginApplication`, `PrepareCard`,
//! `FinishCard`) of every card in flight, sent together in `CardSteps` calls.
//! Under load one call carries many cards' steps instead of one call each (the
//! registry runs steps that arrive together in one transaction anyway); a
//! lone step goes at once. Each step gets what its own call would have
//! answered, errors included.

use std::sync::{Arc, OnceLock};

use proto::registry::v1 as reg;
use proto::registry::v1::card_step::Step;
use proto::registry::v1::card_step_answer::Answer;
use proto::registry::v1::registry_client::RegistryClient;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::{transport::Channel, Status};

/// The registry's limit of steps in one call.
const MAX_STEPS: usize = 64;
/// Calls in flight at once: while the registry writes one batch, the next is
/// on its way.
const IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<Answer, Status>>;

/// A handle on the sender task, which starts with the first step (it needs
/// the runtime) and ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct CardSteps {
    registry: RegistryClient<Channel>,
    queue: Arc<OnceLock<mpsc::UnboundedSender<(Step, Reply)>>>,
}

impl CardSteps {
    pub(crate) fn new(registry: RegistryClient<Channel>) -> CardSteps {
        CardSteps { registry, queue: Arc::new(OnceLock::new()) }
    }

    pub(crate) async fn begin(
        &self,
        req: reg::BeginApplicationRequest,
    ) -> Result<reg::BeginApplicationResponse, Status> {
        match self.call(Step::Begin(Box::new(req))).await? {
            Answer::Begun(begun) => Ok(*begun),
            other => Err(mismatch("begin", &other)),
        }
    }

    pub(crate) async fn prepare(&self, req: reg::PrepareCardRequest) -> Result<reg::PrepareCardResponse, Status> {
        match self.call(Step::Prepare(req)).await? {
            Answer::Prepared(prepared) => Ok(prepared),
            other => Err(mismatch("prepare", &other)),
        }
    }

    pub(crate) async fn finish(&self, req: reg::FinishCardRequest) -> Result<reg::Card, Status> {
        match self.call(Step::Finish(req)).await? {
            Answer::Finished(card) => Ok(card),
            other => Err(mismatch("finish", &other)),
        }
    }

    async fn call(&self, step: Step) -> Result<Answer, Status> {
        let queue = self.queue.get_or_init(|| {
            let (queue, queued) = mpsc::unbounded_channel();
            tokio::spawn(send_batches(self.registry.clone(), queued));
            queue
        });
        let (reply, replied) = oneshot::channel();
        queue.send((step, reply)).map_err(|_| Status::unavailable("the issuance service is stopping"))?;
        replied.await.map_err(|_| Status::unavailable("the issuance service is stopping"))?
    }
}

/// Takes whatever steps are queued (up to `MAX_STEPS`) once a call may start.
async fn send_batches(registry: RegistryClient<Channel>, mut queued: mpsc::UnboundedReceiver<(Step, Reply)>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Some(first) = queued.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_STEPS {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let registry = registry.clone();
        tokio::spawn(async move {
            send(registry, batch).await;
            drop(permit);
        });
    }
}

async fn send(mut registry: RegistryClient<Channel>, batch: Vec<(Step, Reply)>) {
    let (steps, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|(step, reply)| (reg::CardStep { step: Some(step) }, reply)).unzip();
    match registry.card_steps(reg::CardStepsRequest { steps }).await {
        Ok(answered) => {
            let mut answers = answered.into_inner().answers.into_iter();
            for reply in replies {
                let answer = match answers.next().and_then(|a| a.answer) {
                    Some(Answer::Error(e)) => Err(Status::new(tonic::Code::from(e.code), e.message)),
                    Some(answer) => Ok(answer),
                    None => Err(Status::internal("the registry's CardSteps reply lacks an answer for this step")),
                };
                // The caller may have gone; what the registry did stands.
                let _ = reply.send(answer);
            }
        }
        Err(status) => {
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}

fn mismatch(step: &str, answer: &Answer) -> Status {
    let what = match answer {
        Answer::Begun(_) => "begun",
        Answer::Prepared(_) => "prepared",
        Answer::Finished(_) => "finished",
        Answer::Error(_) => "error",
    };
    Status::internal(format!("the registry answered a {step} step with {what}"))
}
