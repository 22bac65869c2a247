using System.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;

namespace Lutra.Models.Tuning;

/// <summary>Times one candidate kernel on one real weight matrix.</summary>
internal unsafe interface ICandidateTimer
{
    /// <summary>Seconds one product of the whole <paramref name="matrix"/> takes with <paramref name="kernel"/> reading <paramref name="weights"/>.</summary>
    double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights);
}

/// <summary>
/// Gives every weight matrix its kernel at load. The candidates for a matrix are the GGUF-layout multiply-add
/// kernel (MAD) and each repacking kernel whose layout accepts it. With <see cref="KernelPreference.Auto"/>,
/// each distinct (type, rows, columns) with more than one candidate is decided once, on its first matrix: from
/// the tune cache, or by timing every candidate on that matrix and ranking them; the shape's other matrices
/// take the fastest candidate that accepts them. Only the winner's repacked copy is kept; <c>repacked</c> hears
/// of each matrix as soon as it has its copy (the model releases the mapped pages then, so the weights are
/// never resident twice for long).
/// </summary>
internal sealed class KernelSelector(
    KernelOptions options,
    string? modelIdentity,
    string cpuIdentity,
    Func<GgmlType, MatVecKernel> mad,
    Func<GgmlType, IReadOnlyList<MatVecKernel>> repacking,
    ICandidateTimer timer,
    Action<WeightMatrix>? repacked = null,
    RepackCache? repackCache = null)
{
    /// <summary>The model's kernels at the process-wide instruction set, timed on a pool of <see cref="KernelOptions.Threads"/>.</summary>
    public static KernelSelection Apply(IReadOnlyList<WeightMatrix> matrices, KernelOptions options, string? modelIdentity,
        Action<WeightMatrix>? repacked, RepackCache? repackCache = null)
    {
        using var timer = new PoolCandidateTimer(options.Threads);
        var isa = KernelIsa.Selected;
        var selector = new KernelSelector(options, modelIdentity, CpuIdentity.Value, t => KernelTable.Get(t, isa),
            t => KernelTable.RepackingKernels(t, isa), timer, repacked, repackCache);
        return selector.Apply(matrices);
    }

    public KernelSelection Apply(IReadOnlyList<WeightMatrix> matrices)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Threads, 1, nameof(options.Threads));
        var clock = Stopwatch.StartNew();
        var cache = options.Preference == KernelPreference.Auto && options.CachePath is not null && modelIdentity is not null
            ? new TuneCache(options.CachePath)
            : null;
        var cached = cache?.Read() ?? [];
        var decided = new List<TuneDecision>();
        var choices = new List<KernelChoice>();
        var tuning = TimeSpan.Zero;
        foreach (var group in matrices.Distinct().GroupBy(m => (m.Type, m.Rows, m.Columns)))
        {
            var shape = group.ToArray();
            var (type, rows, columns) = group.Key;
            var gguf = mad(type);
            var repackers = options.Preference switch
            {
                KernelPreference.Lut => repacking(type).Where(k => k.UsesLookupTables).ToArray(),
                KernelPreference.Interleaved => repacking(type).Where(k => !k.UsesLookupTables).ToArray(),
                _ => repacking(type),
            };
            KernelChoice Choice(KernelChoiceSource source, IReadOnlyList<CandidateTiming>? timings = null) =>
                new(type, rows, columns, shape.Length, shape[0].Kernel, source, timings ?? []);

            if (repackers.Count == 0 || options.Preference == KernelPreference.Mad)
            {
                foreach (var m in shape)
                    m.Use(gguf, null);
                choices.Add(Choice(repackers.Count == 0 ? KernelChoiceSource.OnlyCandidate : KernelChoiceSource.Preference));
                continue;
            }
            MatVecKernel[] staticOrder = [.. repackers, gguf];
            if (options.Preference is KernelPreference.Repacked or KernelPreference.Lut or KernelPreference.Interleaved)
            {
                UseFirstAccepting(shape, staticOrder);
                choices.Add(Choice(KernelChoiceSource.Preference));
                continue;
            }

            MatVecKernel[] candidates = [gguf, .. repackers];
            var key = new TuneKey(modelIdentity ?? "", cpuIdentity, options.Threads, KernelChoice.ShapeName(type, rows, columns),
                candidates.Select(Id).ToArray());
            if (cached.FirstOrDefault(d => d.Key.Equals(key)) is { } hit)
            {
                var ranking = hit.Ranking.Select(name => candidates.First(k => Id(k) == name)).ToArray();
                UseFirstAccepting(shape, ranking);
                var stored = ranking.Length > 1 ? ranking.Select((k, i) => new CandidateTiming(k, hit.Microseconds[i])).ToArray() : null;
                choices.Add(Choice(ranking.Length > 1 ? KernelChoiceSource.Cached : KernelChoiceSource.OnlyCandidate, stored));
                continue;
            }
            if (!options.Tune)
            {
                UseFirstAccepting(shape, staticOrder);
                choices.Add(Choice(KernelChoiceSource.Untuned));
                continue;
            }

            var tuningStart = Stopwatch.GetTimestamp();
            var timings = TuneOn(shape[0], candidates);
            tuning += Stopwatch.GetElapsedTime(tuningStart);
            UseFirstAccepting(new ArraySegment<WeightMatrix>(shape, 1, shape.Length - 1), timings.Select(t => t.Kernel).ToArray());
            decided.Add(new TuneDecision(key, timings.Select(t => Id(t.Kernel)).ToArray(), timings.Select(t => t.Microseconds).ToArray()));
            choices.Add(Choice(timings.Count > 1 ? KernelChoiceSource.Tuned : KernelChoiceSource.OnlyCandidate, timings.Count > 1 ? timings : null));
        }
        // Shapes no repacking kernel accepted are stored too: the next load skips the trial repacking.
        cache?.Store(decided);
        var repackReport = repackCache?.Save(matrices);
        return new KernelSelection(options.Preference, choices, clock.Elapsed, tuning, cache?.Path, repackReport);
    }

    /// <summary>
    /// Relative difference under which two candidates' times count as equal. The tuner's short median moves by
    /// about this much between loads on this shared 2-core machine (llama-1b Q4_0 at two threads ranked the
    /// bit-serial tables 4-8 % ahead of the interleaved kernel on three shapes, which then lost prefill 2x), and
    /// decode is the only thing timed: within the margin the registration order decides, which lists the
    /// kernels with prefill GEMM tiles first.
    /// </summary>
    internal const double NoiseMargin = 0.10;

    /// <summary>Timing rounds per tuned shape; each round times every candidate once (<see cref="ICandidateTimer"/>).</summary>
    internal const int Rounds = 3;

    // Repacking kernels in table order, then the GGUF-layout kernel (prepared lists MAD first).
    private static int RegistrationRank(MatVecKernel kernel, int index) => kernel.RepacksWeights ? index : int.MaxValue;

    /// <summary>The name a kernel has in the tune cache: its type, activation type, description and instruction set.</summary>
    internal static string Id(MatVecKernel kernel) => $"{kernel} [{kernel.Isa}]";

    /// <summary>
    /// Each matrix takes the first kernel of <paramref name="ranking"/> that accepts it, MAD at the latest. Repacking
    /// is most of a load's time (about 2 s for a 1B ternary model on one core) and each matrix's is independent,
    /// so the matrices are spread over the run's thread count.
    /// </summary>
    private void UseFirstAccepting(ArraySegment<WeightMatrix> shape, IReadOnlyList<MatVecKernel> ranking)
    {
        if (options.Threads == 1 || shape.Count < 2)
        {
            foreach (var m in shape)
                Place(m, ranking);
            return;
        }
        try
        {
            Parallel.ForEach(shape, new ParallelOptions { MaxDegreeOfParallelism = options.Threads }, m => Place(m, ranking));
        }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }

    private void Place(WeightMatrix m, IReadOnlyList<MatVecKernel> ranking)
    {
        foreach (var kernel in ranking)
        {
            if (!kernel.RepacksWeights)
            {
                m.Use(kernel, null);
                return;
            }
            if (m.TryRepack(kernel, repackCache) is { } copy)
            {
                m.Use(kernel, copy);
                repacked?.Invoke(m);
                return;
            }
        }
        m.Use(mad(m.Type), null);
    }

    /// <summary>
    /// Times every candidate that accepts <paramref name="sample"/> and leaves the fastest in place (its repacked
    /// copy kept, the others freed). Returns the accepting candidates fastest first, except that candidates within
    /// <see cref="NoiseMargin"/> of the fastest count as tied and go in registration order (the repacking kernels
    /// as their table lists them, best first, then MAD): a difference that small is measurement noise, and on an
    /// oversubscribed machine every candidate can measure the same scheduler tick (seen here at two threads while
    /// another process held a core: 3.99-4.01 ms for kernels 4x apart), where the registration order is the
    /// better guess. A single acceptor is not timed.
    /// </summary>
    private unsafe List<CandidateTiming> TuneOn(WeightMatrix sample, MatVecKernel[] candidates)
    {
        var prepared = new List<(MatVecKernel Kernel, RepackedCopy? Copy)>();
        try
        {
            foreach (var kernel in candidates)
            {
                if (!kernel.RepacksWeights)
                    prepared.Add((kernel, null));
                else if (sample.TryRepack(kernel, repackCache) is { } copy)
                    prepared.Add((kernel, copy));
            }
            if (prepared.Count == 1)
            {
                sample.Use(prepared[0].Kernel, null);
                return [new CandidateTiming(prepared[0].Kernel, 0)];
            }
            // Rounds over all candidates, not all of one candidate's repetitions and then the next's: a neighbour's
            // burst on this shared machine then slows every candidate's round instead of deciding the ranking, and
            // the best round of each (interference only ever adds time) is what is compared.
            var best = Enumerable.Repeat(double.MaxValue, prepared.Count).ToArray();
            for (var round = 0; round < Rounds; round++)
            {
                for (var k = 0; k < prepared.Count; k++)
                {
                    var i = (k + round) % prepared.Count;
                    var p = prepared[i];
                    best[i] = Math.Min(best[i], timer.Seconds(sample, p.Kernel, p.Copy is null ? sample.Data : p.Copy.Pointer));
                }
            }
            var measured = best.Select((seconds, i) => (Index: i, Seconds: seconds)).ToList();
            var fastest = measured.Min(t => t.Seconds);
            var timed = measured
                .OrderBy(t => t.Seconds <= fastest * (1 + NoiseMargin) ? 0 : 1)
                .ThenBy(t => t.Seconds <= fastest * (1 + NoiseMargin) ? RegistrationRank(prepared[t.Index].Kernel, t.Index) : 0)
                .ThenBy(t => t.Seconds)
                .ToList();
            var winner = prepared[timed[0].Index];
            sample.Use(winner.Kernel, winner.Copy);
            prepared[timed[0].Index] = (winner.Kernel, null); // now the matrix's
            if (winner.Copy is not null)
                repacked?.Invoke(sample);
            return timed.Select(t => new CandidateTiming(prepared[t.Index].Kernel, Math.Round(t.Seconds * 1e6, 1))).ToList();
        }
        finally
        {
            foreach (var p in prepared)
                p.Copy?.Dispose();
        }
    }
}
