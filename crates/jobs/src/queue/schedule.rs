//! Scheduling: picking queued jobs for the free slots, spawning their tasks, and the slots a
//! job holds, gives back or lends while it waits for its children.

use super::*;

impl JobQueue {
    /// Picks queued jobs while there are free slots.
    pub(super) fn schedule(&self) {
        let Some((handle, executor)) = self.runtime.get() else {
            return;
        };
        if self.halted.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let mut picked = Vec::new();
        {
            let mut st = lock(&self.state);
            while st.running < self.max_running {
                let Some((_, id)) = st.pending.pop_first() else {
                    break;
                };
                st.running += 1;
                if let Some(e) = st.jobs.get_mut(&id) {
                    e.holds_slot = true;
                }
                picked.push(id);
            }
        }
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        for id in picked {
            tasks.push(Self::spawn_task(&me, handle, executor, id));
        }
    }

    /// Runs a job picked at its submit (it holds its slot already).
    pub(super) fn spawn_job(&self, id: u64) {
        let (Some((handle, executor)), Some(me)) = (self.runtime.get(), self.me.upgrade()) else {
            return;
        };
        let task = Self::spawn_task(&me, handle, executor, id);
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    pub(super) fn spawn_task(
        me: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        executor: &Arc<dyn OpExecutor>,
        id: u64,
    ) -> tokio::task::AbortHandle {
        // Every log line of the job (its opcodes' too) carries `job{id=N}`.
        handle
            .spawn(tracing::Instrument::instrument(
                me.clone().run_job(executor.clone(), id),
                tracing::info_span!("job", id),
            ))
            .abort_handle()
    }

    /// The job's task ends: frees its slot (if not done yet) and picks the next job.
    pub(super) fn job_done(&self, id: u64) {
        Self::free_slot(&mut lock(&self.state), id);
        self.schedule();
    }

    /// Gives back a job's slot if it still holds one; true if it did. Called when a job is
    /// finalized, so that `running_count` never counts a finished job.
    pub(super) fn free_slot(st: &mut State, id: u64) -> bool {
        match st.jobs.get_mut(&id) {
            Some(e) if e.holds_slot => {
                e.holds_slot = false;
                st.running -= 1;
                true
            }
            _ => false,
        }
    }

    /// A job waiting for its child jobs gives its slot to the queue meanwhile: however many
    /// parents wait, their children can run.
    pub(crate) fn lend_slot(&self, id: u64) {
        {
            let mut st = lock(&self.state);
            if Self::free_slot(&mut st, id) {
                if let Some(e) = st.jobs.get_mut(&id) {
                    e.lent_slot = true;
                }
            }
        }
        self.schedule();
    }

    /// The waiting is over: the job runs again, counted again (at once, even beyond the
    /// limit for a moment, so that a parent never waits behind queued jobs).
    pub(crate) fn reclaim_slot(&self, id: u64) {
        let mut st = lock(&self.state);
        let Some(e) = st.jobs.get_mut(&id) else {
            return;
        };
        if !std::mem::take(&mut e.lent_slot) || e.job.status.is_finalized() {
            return;
        }
        e.holds_slot = true;
        st.running += 1;
    }
}
