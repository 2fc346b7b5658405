//! The registry steps of the card path (`BeginApplication`, `PrepareCard`,
//! `FinishCard`) of every card in flight, sent together in `CardSteps` calls.
//! Under load one call carries many cards' steps instead of one call each (the
//! registry runs steps that arrive together in one transaction anyway); a
//! lone step goes at once. Each step gets what its own call would have
//! answered, errors included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use proto::registry::v1 as reg;
use proto::registry::v1::card_step::Step;
use proto::registry::v1::card_step_answer::Answer;
use proto::registry::v1::registry_client::RegistryClient;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::{transport::Channel, Status};

/// The registry's limit of steps in one call.
const MAX_STEPS: usize = 64;
/// A call's steps take at most this share of the gRPC message limit
/// (`[limits] max_message_bytes`), leaving room for their answers.
const SHARE_OF_MESSAGE_LIMIT: usize = 4;
/// Calls in flight at once. With one, the steps that arrive while a call is
/// out all go in the next, so calls are larger and fewer (9.3 steps a call
/// against 7.2 with two in flight, and less CPU per card: issue 14's bench).
const IN_FLIGHT: usize = 1;
/// With at least this many cards on the card path, a call waits `LINGER`
/// for more steps before it goes (as PostgreSQL's `commit_siblings` and
/// `commit_delay` do): larger calls cost less CPU per card (about 6 % at 64
/// RA clients in issue 14's bench), while a lightly loaded CA (8 clients)
/// never waits.
const LINGER_SIBLINGS: usize = 32;
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

type Reply = oneshot::Sender<Result<Answer, Status>>;

/// A handle on the sender task, which starts with the first step (it needs
/// the runtime) and ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct CardSteps {
    registry: RegistryClient<Channel>,
    /// The encoded steps of one call, at most (a lone larger step goes alone).
    max_bytes: usize,
    queue: Arc<OnceLock<mpsc::UnboundedSender<(Step, Reply)>>>,
    /// Cards between their first and last step (`CardSteps::card`).
    cards: Arc<AtomicUsize>,
}

/// A card on the card path, counted until dropped.
pub(crate) struct OnPath(Arc<AtomicUsize>);

impl Drop for OnPath {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CardSteps {
    /// `max_message_bytes`: the gRPC message limit both ends apply.
    pub(crate) fn new(registry: RegistryClient<Channel>, max_message_bytes: usize) -> CardSteps {
        let max_bytes = (max_message_bytes / SHARE_OF_MESSAGE_LIMIT).max(1);
        CardSteps { registry, max_bytes, queue: Arc::new(OnceLock::new()), cards: Arc::new(AtomicUsize::new(0)) }
    }

    /// Counts a card as on the card path while the value lives.
    pub(crate) fn card(&self) -> OnPath {
        self.cards.fetch_add(1, Ordering::Relaxed);
        OnPath(self.cards.clone())
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
            tokio::spawn(send_batches(self.registry.clone(), queued, self.max_bytes, self.cards.clone()));
            queue
        });
        let (reply, replied) = oneshot::channel();
        queue.send((step, reply)).map_err(|_| Status::unavailable("the issuance service is stopping"))?;
        replied.await.map_err(|_| Status::unavailable("the issuance service is stopping"))?
    }
}

/// Takes whatever steps are queued (up to `MAX_STEPS` and `max_bytes`) once a call may start.
async fn send_batches(
    registry: RegistryClient<Channel>,
    mut queued: mpsc::UnboundedReceiver<(Step, Reply)>,
    max_bytes: usize,
    cards: Arc<AtomicUsize>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(step) => step,
            None => match queued.recv().await {
                Some(step) => step,
                None => return,
            },
        };
        if cards.load(Ordering::Relaxed) >= LINGER_SIBLINGS {
            tokio::time::sleep(LINGER).await;
        }
        let batch = take_batch(first, &mut queued, &mut carried, max_bytes);
        let registry = registry.clone();
        tokio::spawn(async move {
            send(registry, batch).await;
            drop(permit);
        });
    }
}

/// `first` and what else is queued, while the call stays within `MAX_STEPS`
/// steps and `max_bytes` encoded; the step that would not fit is `carried`
/// to the next call.
fn take_batch<T>(
    first: (Step, T),
    queued: &mut mpsc::UnboundedReceiver<(Step, T)>,
    carried: &mut Option<(Step, T)>,
    max_bytes: usize,
) -> Vec<(Step, T)> {
    // The step's field and its repeated-field framing: a few bytes more.
    let size = |step: &Step| step.encoded_len() + 8;
    let mut bytes = size(&first.0);
    let mut batch = vec![first];
    while batch.len() < MAX_STEPS {
        let Ok(next) = queued.try_recv() else { break };
        let len = size(&next.0);
        if bytes + len > max_bytes {
            *carried = Some(next);
            break;
        }
        bytes += len;
        batch.push(next);
    }
    batch
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(card_id: &str, der_len: usize) -> Step {
        let certificates = vec![reg::SignedCertificate { serial: "01".into(), certificate_der: vec![0x30; der_len] }];
        Step::Finish(reg::FinishCardRequest { card_id: card_id.into(), certificates, actor: String::new() })
    }

    fn ids(batch: &[(Step, ())]) -> Vec<String> {
        batch
            .iter()
            .map(|(step, _)| match step {
                Step::Finish(f) => f.card_id.clone(),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_call_takes_what_is_queued_up_to_the_step_and_byte_limits() {
        let (queue, mut queued) = mpsc::unbounded_channel();
        for i in 0..70 {
            queue.send((finish(&format!("c{i}"), 10), ())).unwrap();
        }
        let mut carried = None;
        let first = queued.try_recv().unwrap();
        let batch = take_batch(first, &mut queued, &mut carried, usize::MAX);
        assert_eq!(batch.len(), MAX_STEPS);
        assert!(carried.is_none(), "the step limit leaves the rest queued");
        let first = queued.try_recv().unwrap();
        assert_eq!(
            ids(&take_batch(first, &mut queued, &mut carried, usize::MAX)),
            ["c64", "c65", "c66", "c67", "c68", "c69"]
        );

        // Bytes: two 1,000-byte steps fit in 2,100, the third waits for the next call.
        for i in 0..3 {
            queue.send((finish(&format!("b{i}"), 1000), ())).unwrap();
        }
        let first = queued.try_recv().unwrap();
        assert_eq!(ids(&take_batch(first, &mut queued, &mut carried, 2100)), ["b0", "b1"]);
        let next = carried.take().expect("the step that did not fit is carried");
        // A step larger than the limit still goes, alone.
        assert_eq!(ids(&take_batch(next, &mut queued, &mut carried, 10)), ["b2"]);
        assert!(carried.is_none());
    }

    #[tokio::test]
    async fn cards_on_the_path_are_counted_while_their_guard_lives() {
        let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
        let steps = CardSteps::new(RegistryClient::new(channel), 1 << 20);
        let count = || steps.cards.load(Ordering::Relaxed);
        let first = steps.card();
        let second = steps.clone().card();
        assert_eq!(count(), 2, "clones share the count");
        drop(first);
        assert_eq!(count(), 1);
        drop(second);
        assert_eq!(count(), 0);
    }
}
