"""Data parallelism: `python -m paddle.distributed.launch --gpus 0,1 train.py ...` (GPUs) or
`--nproc_per_node 2` (CPU, gloo) starts one process per device, each with `train.batch_size` samples.

Gradients are averaged over the processes after every backward pass (one fused all-reduce per
network), the same average PyTorch's DistributedDataParallel takes in the authors' code. Doing it by
hand, rather than wrapping the networks in paddle.DataParallel, keeps R1 and the path-length penalty
(gradients of gradients) outside the wrapper's hooks. Batch statistics (D's minibatch-stddev, the
path-length mean) are per process, as with DDP; the running mean path length is averaged over
processes after each update so that every process holds the same state.
"""
import paddle
import paddle.distributed as dist


class World:
    """This process's place among the data-parallel processes."""

    def __init__(self):
        self.size = dist.get_world_size()
        self.rank = dist.get_rank()
        if self.size > 1:
            dist.init_parallel_env()

    @property
    def is_main(self):
        return self.rank == 0

    def process_seed(self, seed):
        """Seed of this process's own random streams (seed·world_size + rank)."""
        return seed * self.size + self.rank

    def sync_gradients(self, layer):
        if self.size == 1:
            return
        # Every process ran the same graph, so the same parameters have gradients everywhere
        # (a regularizer can leave some without one, e.g. D's last bias under R1).
        params = [p for p in layer.parameters() if not p.stop_gradient and p.grad is not None]
        flat = paddle.concat([p.grad.reshape([-1]) for p in params])
        dist.all_reduce(flat)
        flat = flat / self.size
        offset = 0
        for p in params:
            n = int(p.size)
            p.grad.set_value(flat[offset:offset + n].reshape(p.shape))
            offset += n

    def mean(self, value):
        if self.size == 1:
            return value
        value = paddle.to_tensor(value, dtype="float32") if not isinstance(value, paddle.Tensor) else value.clone()
        dist.all_reduce(value)
        return value / self.size

    def barrier(self):
        if self.size > 1:
            dist.barrier()
