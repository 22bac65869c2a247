using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Lutra.Benchmarks;
using Lutra.Core.Kernels;

Console.WriteLine($"CPU features: {KernelIsa.DescribeCpu()}; instruction sets: {string.Join(", ", KernelIsa.Supported)}");

// In-process: the kernels need no isolation, and it spares building a generated project per run.
var config = DefaultConfig.Instance
    .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance))
    .AddColumn(WeightBandwidthColumn.Instance);
BenchmarkSwitcher.FromAssembly(typeof(GemvBenchmarks).Assembly).Run(args, config);
