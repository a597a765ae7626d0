"""Distil with a Hugging Face Trainer: the run config's student, teachers (live or cached) and loss.

    xtoken-align distill --demo --steps 1           # makes demo/ (tiny models, W, data, teacher cache)
    python examples/hf_trainer.py demo/run.yaml demo/hf-run [--lora]
    accelerate launch --num_processes N examples/hf_trainer.py demo/run.yaml demo/hf-run   # N GPUs

The Trainer's own arguments (steps, batch size, accumulation, lr, schedule, precision) come from the
config's `training:` section here; set them as TrainingArguments usually are in your own script.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from xtoken_align.distill.config import DistillConfig
from xtoken_align.distill.hf import XTokenDistillationTrainer, training_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a distillation run config (run.yaml)")
    parser.add_argument("output", help="where the Trainer writes checkpoints and the student")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of every weight")
    options = parser.parse_args()
    config = DistillConfig.load(options.config)
    student = AutoModelForCausalLM.from_pretrained(config.student.model, dtype=torch.float32)
    if options.lora:
        from peft import LoraConfig, get_peft_model

        student = get_peft_model(student, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    t = config.training
    args = TrainingArguments(
        output_dir=options.output, max_steps=t.steps, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, warmup_steps=t.warmup_steps,
        lr_scheduler_type="cosine", weight_decay=t.weight_decay, max_grad_norm=t.clip, seed=t.seed,
        bf16=t.precision == "bf16", logging_steps=config.output.log_every, save_strategy="no", report_to=[],
    )  # fmt: skip
    trainer = XTokenDistillationTrainer(student, config, args, train_dataset=training_texts(config))
    trainer.train()
    trainer.save_model()  # the student (LoRA: its adapter), distill-config.yaml, W-learned-<teacher>.safetensors
    if torch.distributed.is_initialized():  # under accelerate launch: leave together (rank 0 may still write)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
