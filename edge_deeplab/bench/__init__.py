"""Bench stage: latency (and accuracy) of segmentation .tflite models on this machine or an Android phone.

run.benchmark          the bench stage in one call (host or phone, mIOU with a DataSpec); run.write_reports
host.bench_host        in-process LiteRT timing of invoke only, models interleaved run by run
phone.bench_android    TFLite's benchmark_model over adb, its output parsed in every known format
accuracy.measure_miou  mIOU of a .tflite on a dataset (edge_deeplab.runtime.evaluate)
report                 terminal table, CSV, JSON, Markdown and a latency-vs-mIOU plot with the Pareto front

No TensorFlow. Sweeps, which build and convert the variants they measure, are edge_deeplab.export.sweep.
"""
