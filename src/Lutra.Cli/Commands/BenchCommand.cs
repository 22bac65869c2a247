using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lutra.Core.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Threading;
using Lutra.Gguf;
using Lutra.Models;
using Lutra.Models.Synthetic;
using Lutra.Models.Tuning;

namespace Lutra.Cli.Commands;

/// <summary>
/// `lutra bench`: llama-bench-style prompt (pp) and generation (tg) throughput, and for every row the weight
/// bytes read per token, the achieved GB/s and its share of the read bandwidth a probe measured in the same
/// process just before, at the same thread count — progress toward the roofline on any machine, no other tool.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model", "-m") { Description = "GGUF model file(s)", AllowMultipleArgumentsPerToken = true };
        var synthetic = new Option<string[]>("--synthetic")
        {
            Description = $"random-weight model(s) built on the fly, SHAPE:TYPE (shapes: {string.Join(", ", SyntheticShape.All.Select(s => s.Name))})",
            AllowMultipleArgumentsPerToken = true,
        };
        var prompt = new Option<int>("--n-prompt", "-p") { Description = "prompt tokens of the pp test (0 skips it)", DefaultValueFactory = _ => 128 };
        var gen = new Option<int>("--n-gen", "-n") { Description = "tokens of the tg test (0 skips it)", DefaultValueFactory = _ => 64 };
        var threads = new Option<string>("--threads", "-t") { Description = "comma-separated thread counts", DefaultValueFactory = _ => Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture) };
        var reps = new Option<int>("--repetitions", "-r") { Description = "repetitions of each test", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "print the rows as a JSON array (llama-bench field names) instead of a table" };
        var kernels = new Option<string?>("--kernels")
        {
            Description = "instead of models: GEMV speed of each kernel vs the bandwidth probe, for the listed types (comma-separated, or 'all')",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var kernelChoice = new KernelFlags(listOfChoices: true);
        var command = new Command("bench", "Measure prompt and generation speed against the machine's memory-bandwidth roofline.")
        {
            models, synthetic, prompt, gen, threads, reps, json, kernels,
        };
        kernelChoice.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() => parse.GetResult(kernels) is not null
            ? KernelBench.Run(ParseKernelTypes(parse.GetValue(kernels)), KernelIsa.Supported.Where(i => i != InstructionSet.Scalar).ToArray(),
                Math.Max(parse.GetValue(reps), 5))
            : Run(
            parse.GetValue(models) ?? [], parse.GetValue(synthetic) ?? [], parse.GetValue(prompt), parse.GetValue(gen),
            ParseThreads(parse.GetValue(threads)!), parse.GetValue(reps), parse.GetValue(json), kernelChoice.ReadList(parse), choice => kernelChoice.Options(parse, choice, 1))));
        return command;
    }

    private static GgmlType[] ParseKernelTypes(string? list)
    {
        if (string.IsNullOrWhiteSpace(list) || list == "all")
        {
            return QuantTypes.All.Where(t => t.IsSupported && t.Type is not (GgmlType.Q8_1 or GgmlType.Q8_K or GgmlType.F32))
                .Select(t => t.Type).ToArray();
        }
        return list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(SynthCommand.ParseWeightType).ToArray();
    }

    private static int[] ParseThreads(string list)
    {
        var counts = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var t) && t > 0
                ? t
                : throw new ArgumentException($"--threads: '{s}' is not a positive whole number"))
            .ToArray();
        return counts.Length > 0 ? counts : throw new ArgumentException("--threads needs at least one count");
    }

    private static int Run(string[] models, string[] synthetic, int nPrompt, int nGen, int[] threadCounts, int reps, bool json,
        KernelPreference[] choices, Func<KernelPreference, KernelOptions> loadOptions)
    {
        if (models.Length == 0 && synthetic.Length == 0)
            throw new ArgumentException("give a model with -m or a synthetic one with --synthetic SHAPE:TYPE (e.g. llama-1b:Q4_0)");
        if (nPrompt < 0 || nGen < 0 || (nPrompt == 0 && nGen == 0))
            throw new ArgumentException("-p and -n must be ≥ 0 and not both 0");
        ArgumentOutOfRangeException.ThrowIfLessThan(reps, 1, "--repetitions");

        // Every argument is checked before anything is printed or built.
        foreach (var m in models)
        {
            if (!File.Exists(m))
                throw new FileNotFoundException($"model file '{m}' does not exist");
        }
        foreach (var s in synthetic)
            ParseSynthetic(s);
        Console.Error.WriteLine($"cpu: {KernelIsa.DescribeCpu()}; kernels: {KernelIsa.Selected} (force with {KernelIsa.ForceVariable})");
        var rows = new List<BenchRow>();
        if (!json)
            PrintHeader();
        foreach (var spec in models.Select(m => new ModelSpec(m, null)).Concat(synthetic.Select(s => new ModelSpec(null, s))))
        {
            var path = spec.Synthetic is null ? spec.Path! : WriteSynthetic(spec.Synthetic);
            try
            {
                var label = spec.Synthetic ?? Path.GetFileNameWithoutExtension(path);
                foreach (var t in threadCounts)
                {
                    using var pool = new ComputePool(t, "lutra-probe");
                    var probe = BandwidthProbe.MeasureReadGBps(pool, repetitions: 10);
                    var measured = new List<BenchRow>();
                    // One load per kernel choice, tuned at this thread count: the choices are measured on the same
                    // file, between the same two probes. A synthetic file is new each run, so it is never cached.
                    foreach (var choice in choices)
                    {
                        var options = loadOptions(choice) with { Threads = t };
                        using var model = Transformer.Load(path, spec.Synthetic is null ? options : options with { CachePath = null, RepackCacheDirectory = null });
                        var facts = ModelFacts.Of(model);
                        PrintKernels(label, t, model);
                        if (nPrompt > 0)
                            measured.Add(Measure(model, label, facts, t, nPrompt, 0, reps, pool));
                        if (nGen > 0)
                            measured.Add(Measure(model, label, facts, t, 0, nGen, reps, pool));
                        if (ResidentMiB() is double rss)
                            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  resident after the runs: {rss:F0} MiB"));
                        // On a shared machine one probe can catch a neighbour's burst (seen here: two threads
                        // reading 34 GB/s in one probe while the decode rows right after read 57), so the ceiling
                        // is the best of a probe before the rows and one after each kernel choice's rows.
                        probe = Math.Max(probe, BandwidthProbe.MeasureReadGBps(pool, repetitions: 10));
                    }
                    foreach (var row in measured)
                    {
                        var done = row with { ProbeGbps = probe, RooflinePct = 100 * row.AchievedGbps / probe };
                        rows.Add(done);
                        if (!json)
                            PrintRow(done);
                    }
                }
            }
            finally
            {
                if (spec.Synthetic is not null)
                    File.Delete(path);
            }
        }
        if (json)
            Console.Out.WriteLine(JsonSerializer.Serialize(rows, BenchJson.Default.ListBenchRow));
        return 0;
    }

    private static (SyntheticShape Shape, GgmlType Type) ParseSynthetic(string spec)
    {
        var parts = spec.Split(':');
        if (parts.Length != 2)
            throw new ArgumentException($"--synthetic '{spec}': expected SHAPE:TYPE, e.g. llama-1b:Q4_0");
        return (SyntheticShape.Get(parts[0]), SynthCommand.ParseWeightType(parts[1]));
    }

    private static string WriteSynthetic(string spec)
    {
        var (shape, type) = ParseSynthetic(spec);
        var path = Path.Combine(Path.GetTempPath(), $"lutra-bench-{shape.Name}-{QuantTypes.Get(type).Name}-{Environment.ProcessId}.gguf");
        var sw = Stopwatch.StartNew();
        SyntheticModel.Create(shape, type).Write(path);
        Console.Error.WriteLine($"built {spec} ({new FileInfo(path).Length / 1e6:F0} MB) in {sw.Elapsed.TotalSeconds:F1} s");
        return path;
    }

    private static readonly TimeSpan WarmUpTime = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Bytes the probe run between repetitions streams through: 8x a 32 MB L3, and small enough to pass in
    /// 5-10 ms, so the probes beside a repetition are close to it in time.
    /// </summary>
    private const long AdjacentProbeBytes = 256L << 20;

    private static BenchRow Measure(Transformer model, string label, ModelFacts facts, int threads, int nPrompt, int nGen, int reps,
        ComputePool probePool)
    {
        var hp = model.HyperParameters;
        var tokens = nPrompt > 0 ? nPrompt : nGen;
        var options = new InferenceOptions { ContextSize = tokens + 1, BatchSize = Math.Max(1, nPrompt), Threads = threads };
        using var state = model.CreateState(options);
        var rng = new Random(42);
        var ids = new int[tokens];
        for (var i = 0; i < ids.Length; i++)
            ids[i] = rng.Next(hp.VocabSize);

        void Once()
        {
            if (nPrompt > 0)
            {
                model.Forward(state, ids, 0, allLogits: false, default);
                return;
            }
            for (var i = 0; i < nGen; i++)
                model.Forward(state, ids.AsSpan(i, 1), i, allLogits: false, default);
        }

        // Warm-up: page-in of the mapped weights, and long enough for tiered compilation to replace the forward
        // pass's first-call code (one short run left the first row of a process up to 1.5x slow).
        var warmUp = Stopwatch.StartNew();
        var warmUpRuns = 0;
        do
        {
            Once();
        }
        while (++warmUpRuns < 8 && warmUp.Elapsed < WarmUpTime);
        // Generation reads every weight once per token; a prompt batch reads them once for the whole batch.
        var bytesPerToken = nPrompt > 0 ? (double)facts.WeightBytes / nPrompt : facts.WeightBytes;
        var rates = new double[reps];
        var ceilings = new double[reps];
        var adjacent = new double[reps];
        var cpuBefore = CpuTicks.Read();
        using (var probe = new BandwidthProbe(AdjacentProbeBytes))
        {
            // A neighbour on a shared host moves the bandwidth between 34 and 77 GB/s from one second to the next
            // (two threads, this VM): each repetition is also compared with the best of the probes just before and
            // just after it, which see the same neighbours it did.
            var before = probe.MeasureGBps(probePool, repetitions: 3);
            for (var r = 0; r < reps; r++)
            {
                var sw = Stopwatch.StartNew();
                Once();
                rates[r] = tokens / sw.Elapsed.TotalSeconds;
                var after = probe.MeasureGBps(probePool, repetitions: 3);
                ceilings[r] = Math.Max(before, after);
                adjacent[r] = 100 * bytesPerToken * rates[r] / 1e9 / ceilings[r];
                before = after;
            }
        }
        var stealPct = CpuTicks.StealPercent(cpuBefore, CpuTicks.Read());
        if (stealPct is double steal)
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {label} {(nPrompt > 0 ? $"pp{nPrompt}" : $"tg{nGen}")} at {threads} thread(s): the hypervisor took {steal:F1} % of the machine's CPU time (steal)"));
        var mean = rates.Average();
        var sd = reps > 1 ? Math.Sqrt(rates.Sum(x => (x - mean) * (x - mean)) / (reps - 1)) : 0;
        var achieved = bytesPerToken * mean / 1e9;
        var selection = model.Kernels;
        var row = new BenchRow(label, facts.FileBytes, facts.Parameters, threads, nPrompt, nGen, "f16", KernelIsa.Selected.ToString(),
            Name(selection.Preference), selection.Elapsed.TotalMilliseconds, selection.Tuning.TotalMilliseconds, facts.Shapes,
            mean, sd, (long)bytesPerToken, achieved, ProbeGbps: 0, RooflinePct: 0, RepeatedTiming.Median(adjacent), ceilings, rates, stealPct);
        return row;
    }

    /// <summary>This process's resident memory (VmRSS, Linux), so a repacked copy that doubled the weights would show.</summary>
    private static double? ResidentMiB()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status))
            return null;
        var line = File.ReadLines(status).FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        var kb = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        return long.TryParse(kb, NumberStyles.None, CultureInfo.InvariantCulture, out var k) ? k / 1024.0 : null;
    }

    private static string Name(KernelPreference preference) => preference.ToString().ToLowerInvariant();

    /// <summary>
    /// The machine's CPU time counters (Linux /proc/stat, all CPUs): on a virtual machine, "steal" is time a vCPU
    /// was ready to run but the host ran something else, which no bandwidth probe can see coming.
    /// </summary>
    private readonly record struct CpuTicks(long Total, long Steal)
    {
        public static CpuTicks? Read()
        {
            try
            {
                var line = File.Exists("/proc/stat") ? File.ReadLines("/proc/stat").FirstOrDefault() : null;
                if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
                    return null;
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
                    .Select(f => long.Parse(f, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
                // user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user/nice]
                return fields.Length < 8 ? null : new CpuTicks(fields.Take(8).Sum(), fields[7]);
            }
            catch (Exception e) when (e is IOException or FormatException or OverflowException or UnauthorizedAccessException)
            {
                return null;
            }
        }

        public static double? StealPercent(CpuTicks? before, CpuTicks? after) =>
            before is { } b && after is { } a && a.Total > b.Total ? 100.0 * (a.Steal - b.Steal) / (a.Total - b.Total) : null;
    }

    /// <summary>The kernel of every weight shape, and for tuned shapes each candidate's time (stderr).</summary>
    private static void PrintKernels(string label, int threads, Transformer model)
    {
        var selection = model.Kernels;
        var tuned = selection.TunedShapes;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{label} --kernel {Name(selection.Preference)} -t {threads}: kernels chosen and weights repacked in {selection.Elapsed.TotalSeconds:F2} s, of which {selection.Tuning.TotalSeconds:F2} s timing {tuned} shape{(tuned == 1 ? "" : "s")}"));
        foreach (var c in selection.Choices)
        {
            var timings = c.Timings.Count > 0
                ? " (" + string.Join(", ", c.Timings.Select(t => string.Create(CultureInfo.InvariantCulture,
                    $"{t.Kernel.Name} {t.Microseconds:F0} µs{(t.PromptMicroseconds is { } p ? $" + {p:F0} µs/prompt token" : "")}"))) + ")"
                : "";
            Console.Error.WriteLine($"  {c.Shape} x{c.MatrixCount}: {c.Kernel} [{Source(c.Source)}]{timings}");
        }
        if (selection.RepackCache is { } cache)
        {
            Console.Error.WriteLine(cache.WriteError is { } error
                ? $"  repack cache {cache.Path}: {cache.MatricesRead} matrices read; not written: {error}"
                : $"  repack cache {cache.Path}: {cache.MatricesRead} matrices read, {cache.MatricesWritten} written");
        }
    }

    private static string Source(KernelChoiceSource source) => source switch
    {
        KernelChoiceSource.OnlyCandidate => "only candidate",
        KernelChoiceSource.Preference => "forced",
        KernelChoiceSource.Tuned => "tuned",
        KernelChoiceSource.Cached => "tune cache",
        _ => "untuned",
    };

    private static void PrintHeader()
    {
        Console.Out.WriteLine("| model | size | params | kernels | threads | test | t/s | weights/token | GB/s | probe GB/s | % roofline | % adjacent probes |");
        Console.Out.WriteLine("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    }

    private static void PrintRow(BenchRow r)
    {
        var test = r.NPrompt > 0 ? $"pp{r.NPrompt}" : $"tg{r.NGen}";
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {r.Model} | {r.ModelSize / 1048576.0:F1} MiB | {r.ModelNParams / 1e6:F1} M | {r.Kernels} {r.KernelChoice} | {r.NThreads} | {test} | {r.AvgTs:F2} ± {r.StddevTs:F2} | {r.WeightBytesPerToken / 1e6:F1} MB | {r.AchievedGbps:F1} | {r.ProbeGbps:F1} | {r.RooflinePct:F0} % | {r.AdjacentRooflinePct:F0} % |"));
    }

    /// <summary>A model to measure: a file, or a synthetic SHAPE:TYPE built into a temporary file.</summary>
    private sealed record ModelSpec(string? Path, string? Synthetic);

    /// <summary>What a bench row needs to know about a model, computed once.</summary>
    private sealed record ModelFacts(long FileBytes, long Parameters, long WeightBytes, KernelShapeRow[] Shapes)
    {
        public static ModelFacts Of(Transformer model)
        {
            var w = model.Weights;
            var matrices = w.Matrices.Distinct().ToArray();
            // Every matrix is read whole per token, plus one row of the token embedding.
            var weightBytes = matrices.Sum(m => (long)m.Rows * m.RowBytes);
            if (!matrices.Contains(w.TokenEmbedding))
                weightBytes += w.TokenEmbedding.RowBytes;
            var shapes = model.Kernels.Choices.Select(c => new KernelShapeRow(c.Shape, c.MatrixCount, c.Kernel.ToString(), Source(c.Source),
                c.Timings.Select(t => new KernelTimingRow(t.Kernel.ToString(), t.Microseconds, t.PromptMicroseconds)).ToArray())).ToArray();
            var file = model.File;
            return new ModelFacts(file.Tensors.Sum(t => t.ByteSize), file.Tensors.Sum(t => t.ElementCount), weightBytes, shapes);
        }
    }
}

/// <summary>One bench result; property names follow llama-bench's JSON where they apply.</summary>
internal sealed record BenchRow(
    [property: JsonPropertyName("model_filename")] string Model,
    [property: JsonPropertyName("model_size")] long ModelSize,
    [property: JsonPropertyName("model_n_params")] long ModelNParams,
    [property: JsonPropertyName("n_threads")] int NThreads,
    [property: JsonPropertyName("n_prompt")] int NPrompt,
    [property: JsonPropertyName("n_gen")] int NGen,
    [property: JsonPropertyName("type_k")] string TypeK,
    [property: JsonPropertyName("kernels")] string Kernels,
    [property: JsonPropertyName("kernel_choice")] string KernelChoice,
    [property: JsonPropertyName("kernel_choice_ms")] double KernelChoiceMs,
    [property: JsonPropertyName("kernel_tuning_ms")] double KernelTuningMs,
    [property: JsonPropertyName("kernel_shapes")] KernelShapeRow[] KernelShapes,
    [property: JsonPropertyName("avg_ts")] double AvgTs,
    [property: JsonPropertyName("stddev_ts")] double StddevTs,
    [property: JsonPropertyName("weight_bytes_per_token")] long WeightBytesPerToken,
    [property: JsonPropertyName("achieved_gbps")] double AchievedGbps,
    [property: JsonPropertyName("probe_gbps")] double ProbeGbps,
    [property: JsonPropertyName("roofline_pct")] double RooflinePct,
    /// <summary>Median over the repetitions of each one's GB/s against its <see cref="AdjacentProbeGbps"/>.</summary>
    [property: JsonPropertyName("adjacent_roofline_pct")] double AdjacentRooflinePct,
    /// <summary>Per repetition, the best of the probes just before and just after it.</summary>
    [property: JsonPropertyName("adjacent_probe_gbps")] double[] AdjacentProbeGbps,
    [property: JsonPropertyName("samples_ts")] double[] SamplesTs,
    [property: JsonPropertyName("cpu_steal_pct")] double? CpuStealPct);

/// <summary>The kernel a bench row's model used for one weight shape, and why.</summary>
internal sealed record KernelShapeRow(
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("matrices")] int Matrices,
    [property: JsonPropertyName("kernel")] string Kernel,
    [property: JsonPropertyName("source")] string Source,
    [property: JsonPropertyName("candidates_us")] KernelTimingRow[] Candidates);

internal sealed record KernelTimingRow(
    [property: JsonPropertyName("kernel")] string Kernel,
    [property: JsonPropertyName("us")] double Microseconds,
    [property: JsonPropertyName("prompt_us_per_token")] double? PromptMicroseconds);

[JsonSourceGenerationOptions(WriteIndented = true)]
[JsonSerializable(typeof(List<BenchRow>))]
internal sealed partial class BenchJson : JsonSerializerContext;
