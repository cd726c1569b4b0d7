"""Submit pretrain / finetune / linprobe / test to Slurm with submitit (one task per GPU).

Preemption or the time limit makes the job checkpoint at the next step and requeue itself;
the requeued job resumes from OUTPUT_DIR/checkpoint-last.pth.

Example:
  python tools/submit.py --job pretrain --cfg configs/video/k400_pretrain_msd.yaml \
      --nodes 8 --gpus-per-node 8 --partition learnfair --timeout 4320 --job-dir /checkpoint/$USER/k400_pt
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.jobs import JOBS  # noqa: E402
from common.engine.launch import submit  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=JOBS, required=True)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config")
    parser.add_argument("--job-dir", required=True, help="OUTPUT_DIR of the run; submitit logs in JOB_DIR/submitit")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--cpus-per-task", type=int, default=10)
    parser.add_argument("--partition", default="", help="Slurm partition")
    parser.add_argument("--timeout", type=int, default=4320, help="minutes per allocation (requeued after)")
    parser.add_argument("--local", action="store_true", help="run here with submitit's local executor")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    job = submit(args.job, args.cfg_file, args.opts, job_dir=args.job_dir, nodes=args.nodes,
                 gpus_per_node=args.gpus_per_node, partition=args.partition, timeout_min=args.timeout,
                 cpus_per_task=args.cpus_per_task, cluster="local" if args.local else None)
    print(f"submitted job {job.job_id}; logs in {os.path.join(args.job_dir, 'submitit', str(job.job_id))}")
    if args.local:
        print(job.result())


if __name__ == "__main__":
    main()
