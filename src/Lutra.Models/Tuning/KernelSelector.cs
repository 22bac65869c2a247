using System.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;

namespace Lutra.Models.Tuning;

/// <summary>
/// Times candidate kernels on one real weight matrix, in rounds: every candidate is warmed up once, then each round
/// starts with <see cref="StartRound"/> and times every candidate once.
/// </summary>
internal unsafe interface ICandidateTimer
{
    /// <summary>
    /// Runs the product of <see cref="Seconds"/> once, untimed (first-touch page faults, the pool's first wake-up),
    /// before the rounds that time it.
    /// </summary>
    void WarmUp(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens);

    /// <summary>
    /// Begins a decode round on <paramref name="matrix"/>: afterwards each candidate's weights are read from memory the
    /// first time the round times it, as in decode, where a whole model never fits in cache. Prompt rounds begin
    /// without it.
    /// </summary>
    void StartRound(WeightMatrix matrix);

    /// <summary>
    /// Seconds one product of the whole <paramref name="matrix"/> with <paramref name="tokens"/> input rows takes with
    /// <paramref name="kernel"/> reading <paramref name="weights"/>.
    /// </summary>
    double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens);
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
        // The kernels' build is part of the machine a ranking was measured on: a kernel change can reorder the candidates
        // (their activation preparation once ran unoptimized while timed, which put the lookup tables 2x behind). So is
        // the timer's, which lives in this assembly: how it times a candidate decides rankings as much as the kernels do.
        var machine = $"{CpuIdentity.Value}; Lutra.Core {typeof(MatVecKernel).Assembly.ManifestModule.ModuleVersionId}; "
            + $"Lutra.Models {typeof(KernelSelector).Assembly.ManifestModule.ModuleVersionId}";
        var selector = new KernelSelector(options, modelIdentity, machine, t => KernelTable.Get(t, isa),
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
                var stored = ranking.Length > 1 ? ranking.Select((k, i) => new CandidateTiming(k, hit.Microseconds[i], hit.PromptMicroseconds?[i])).ToArray() : null;
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
            var timings = TuneOn(shape[0], candidates, out var samplePlaced);
            tuning += Stopwatch.GetElapsedTime(tuningStart);
            UseFirstAccepting(samplePlaced ? new ArraySegment<WeightMatrix>(shape, 1, shape.Length - 1) : shape, timings.Select(t => t.Kernel).ToArray());
            decided.Add(new TuneDecision(key, timings.Select(t => Id(t.Kernel)).ToArray(), timings.Select(t => t.Microseconds).ToArray(),
                timings.Select(t => t.PromptMicroseconds).ToArray()));
            choices.Add(Choice(timings.Count > 1 ? KernelChoiceSource.Tuned : KernelChoiceSource.OnlyCandidate, timings.Count > 1 ? timings : null));
        }
        // Shapes no repacking kernel accepted are stored too: the next load skips the trial repacking.
        cache?.Store(decided);
        var repackReport = repackCache?.Save(matrices);
        return new KernelSelection(options.Preference, choices, clock.Elapsed, tuning, cache?.Path, repackReport);
    }

    /// <summary>
    /// Relative difference under which two candidates' costs count as equal. The tuner's short median moves by
    /// about this much between loads on this shared 2-core machine (llama-1b Q4_0 at two threads ranked the
    /// bit-serial tables 4-8 % ahead of the interleaved kernel on three shapes): within the margin the
    /// registration order decides, which lists the kernels with prefill GEMM tiles first.
    /// </summary>
    internal const double NoiseMargin = 0.10;

    /// <summary>
    /// Rows a tall matrix is timed on (its first ones; at least twice as many rows make it tall): each row costs the
    /// same, and llama-1b's 32000-row output matrix was half of the tuner's time on an Intel host (repacking each
    /// candidate's 37 MB copy 231 ms at two threads, its rounds 197 ms, of 0.89 s).
    /// </summary>
    internal const int TimedRows = 8192;

    /// <summary>Timing rounds per tuned shape; each round times every candidate once (<see cref="ICandidateTimer"/>).</summary>
    internal const int Rounds = 3;

    /// <summary>
    /// Input rows of the prompt batch the shortlisted candidates are timed on: the interleaved kernels' GEMM tile.
    /// It understates their gain on longer prompts (Q6_K interleaved against MAD, llama-1b, one thread: pp4 47
    /// against 37 t/s, pp16 89 against 40), but a larger batch would cost the tuner more than its second.
    /// </summary>
    internal const int PromptTokens = 4;

    /// <summary>
    /// Candidates whose decode time is within this factor of the fastest are also timed on a prompt batch. Decode
    /// alone ranked the Q4_K/Q6_K multiply-add kernel up to 10-20 % ahead of the interleaved one on some llama-1b
    /// shapes, whose GEMM tiles make prefill 2-3x faster (pp128 187 against 55 t/s); further behind than this, no
    /// prefill gain makes up the decode loss.
    /// </summary>
    internal const double PromptShortlist = 1.5;

    /// <summary>A prompt time per token this many times the candidate's decode time is timed again (interference).</summary>
    internal const double SuspectPromptFactor = 1.5;

    /// <summary>
    /// A candidate whose best of the first two rounds is this many times slower than the fastest is not timed
    /// again (the multiply-add kernel of a ternary type is 5-10x behind the tables). Two rounds, because one burst
    /// of interference can cost a single measurement 5x here.
    /// </summary>
    internal const double HopelessFactor = 3.0;

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
    /// The best of <see cref="Rounds"/> timings of each of <paramref name="candidates"/> (indexes into
    /// <paramref name="prepared"/>; the others read infinity) on <paramref name="tokens"/> input rows. Rounds go over
    /// all candidates, not all of one candidate's repetitions and then the next's: a neighbour's burst on this shared
    /// machine then slows every candidate's round instead of deciding the ranking, and the best round of each
    /// (interference only ever adds time) is what is compared. With <paramref name="dropHopeless"/>, a candidate
    /// <see cref="HopelessFactor"/> behind after two rounds sits out the others. A round evicts the caches once for
    /// all its candidates (each reads its own copy of the weights) and times each once: evicting costs a read of
    /// twice the last-level cache, 18-20 ms for a 260 MB L3 at one thread, and one eviction per timed repetition
    /// made tuning llama-1b Q4_0 take 6.8 s there. Prompt rounds evict nothing (see below): half the evictions,
    /// which were about half of the tuner's time on that host.
    /// </summary>
    private unsafe double[] BestOfRounds(WeightMatrix sample, List<(MatVecKernel Kernel, RepackedCopy? Copy)> prepared, int[] candidates,
        int tokens, bool dropHopeless)
    {
        // Only decode reads a matrix cold: a prompt's GEMM reads it once per tile of tokens, and every tile after the
        // first finds it in the last-level cache when it fits there, as it does when timed right after the decode rounds.
        var cold = tokens == 1;
        var best = Enumerable.Repeat(double.MaxValue, prepared.Count).ToArray();
        var active = candidates.ToList();
        byte* Weights(int i) => prepared[i].Copy is { } copy ? copy.Pointer : sample.Data;
        foreach (var i in active)
            timer.WarmUp(sample, prepared[i].Kernel, Weights(i), tokens);
        for (var round = 0; round < Rounds; round++)
        {
            if (cold)
                timer.StartRound(sample);
            for (var k = 0; k < active.Count; k++)
            {
                var i = active[(k + round) % active.Count];
                best[i] = Math.Min(best[i], timer.Seconds(sample, prepared[i].Kernel, Weights(i), tokens));
            }
            if (dropHopeless && round == 1)
            {
                var fastest = active.Min(i => best[i]);
                active.RemoveAll(i => best[i] > fastest * HopelessFactor);
            }
        }
        return best;
    }

    /// <summary>
    /// Times every candidate that accepts <paramref name="sample"/> and leaves the cheapest in place (its repacked
    /// copy kept, the others freed). A candidate's cost is one decoded token plus one prompt token: its decode time,
    /// plus, for those within <see cref="PromptShortlist"/> of the fastest decode, its time per token of a
    /// <see cref="PromptTokens"/>-token batch (a chat evaluates about as many prompt tokens as it generates, and
    /// kernels with GEMM tiles are several times faster there). Returns the accepting candidates cheapest first
    /// (the shortlist, then the others by decode time), except that candidates within <see cref="NoiseMargin"/> of
    /// the cheapest count as tied and go in registration order (the repacking kernels as their table lists them,
    /// best first, then MAD): a difference that small is measurement noise, and on an oversubscribed machine every
    /// candidate can measure the same scheduler tick (seen here at two threads while another process held a core:
    /// 3.99-4.01 ms for kernels 4x apart), where the registration order is the better guess. A single acceptor is
    /// not timed. A tall matrix is timed on its first <see cref="TimedRows"/> rows, the times scaled to all of
    /// them; then <paramref name="placed"/> is false and the caller gives the matrix its kernel, else the matrix
    /// already has it (the winner's copy, or the mapped weights).
    /// </summary>
    private unsafe List<CandidateTiming> TuneOn(WeightMatrix matrix, MatVecKernel[] candidates, out bool placed)
    {
        var sliced = matrix.Rows >= 2 * TimedRows && candidates.All(k => TimedRows % k.RowTile == 0);
        // A view of the first rows, over the same mapped bytes; it owns nothing, since it never gets a kernel.
        var sample = sliced ? new WeightMatrix(matrix.Name, matrix.Type, matrix.Columns, TimedRows, matrix.Data) : matrix;
        var scale = (double)matrix.Rows / sample.Rows;
        placed = !sliced;
        var prepared = new List<(MatVecKernel Kernel, RepackedCopy? Copy)>();
        try
        {
            foreach (var kernel in candidates)
            {
                if (!kernel.RepacksWeights)
                    prepared.Add((kernel, null));
                else if (sample.TryRepack(kernel, sliced ? null : repackCache) is { } copy) // the cache holds whole matrices
                    prepared.Add((kernel, copy));
            }
            if (prepared.Count == 1)
            {
                if (!sliced)
                    sample.Use(prepared[0].Kernel, null);
                return [new CandidateTiming(prepared[0].Kernel, 0)];
            }
            var all = Enumerable.Range(0, prepared.Count).ToArray();
            var decode = BestOfRounds(sample, prepared, all, tokens: 1, dropHopeless: true);
            var fastest = decode.Min();
            var shortlist = all.Where(i => decode[i] <= fastest * PromptShortlist).ToArray();
            var prompt = shortlist.Length > 1 ? BestOfRounds(sample, prepared, shortlist, PromptTokens, dropHopeless: false) : null;
            if (prompt is not null)
            {
                // A batch never costs more per token than one token alone (a kernel without GEMM tiles multiplies it
                // token by token), so a prompt time well above the decode time caught interference in every round (a
                // two-thread Q4_0 load timed the interleaved kernel's batch at 251 µs per token against 153 µs for
                // its decode, 81 µs in other loads, and gave the shape to the tables: pp128 202 against 370 t/s).
                var suspect = shortlist.Where(i => prompt[i] / PromptTokens > decode[i] * SuspectPromptFactor).ToArray();
                if (suspect.Length > 0)
                {
                    var again = BestOfRounds(sample, prepared, suspect, PromptTokens, dropHopeless: false);
                    foreach (var i in suspect)
                        prompt[i] = Math.Min(prompt[i], again[i]);
                }
            }
            // Per candidate: decode + one prompt token on the shortlist; the others rank after it by decode alone.
            var cost = all.Select(i => prompt is null ? decode[i] : shortlist.Contains(i) ? decode[i] + prompt[i] / PromptTokens : double.MaxValue)
                .ToArray();
            var cheapest = cost.Min();
            bool Tied(int i) => cost[i] <= cheapest * (1 + NoiseMargin);
            var timed = all
                .OrderBy(i => Tied(i) ? 0 : 1)
                .ThenBy(i => Tied(i) ? RegistrationRank(prepared[i].Kernel, i) : 0)
                .ThenBy(i => cost[i])
                .ThenBy(i => decode[i])
                .ToList();
            if (!sliced)
            {
                var winner = prepared[timed[0]];
                sample.Use(winner.Kernel, winner.Copy);
                prepared[timed[0]] = (winner.Kernel, null); // now the matrix's
                if (winner.Copy is not null)
                    repacked?.Invoke(sample);
            }
            return timed.Select(i => new CandidateTiming(prepared[i].Kernel, Math.Round(decode[i] * scale * 1e6, 1),
                prompt is not null && shortlist.Contains(i) ? Math.Round(prompt[i] * scale / PromptTokens * 1e6, 1) : null)).ToList();
        }
        finally
        {
            foreach (var p in prepared)
                p.Copy?.Dispose();
        }
    }
}
