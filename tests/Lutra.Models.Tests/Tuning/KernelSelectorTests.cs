using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models.Tuning;

namespace Lutra.Models.Tests.Tuning;

public sealed class KernelSelectorTests : IDisposable
{
    private const string Cpu = "test cpu";
    private readonly FakeMatrices _matrices = new();
    private readonly string _cacheDirectory = Path.Combine(Path.GetTempPath(), $"lutra-tune-{Guid.NewGuid():N}");
    private readonly FakeKernel _mad = new("mad", repacks: false);
    private readonly FakeKernel _madF16 = new("mad f16", repacks: false, GgmlType.F16);
    private readonly FakeKernel _lutA = new("lut a", repacks: true);
    private readonly FakeKernel _lutB = new("lut b", repacks: true);

    public void Dispose()
    {
        _matrices.Dispose();
        if (Directory.Exists(_cacheDirectory))
            Directory.Delete(_cacheDirectory, recursive: true);
    }

    private string CachePath => Path.Combine(_cacheDirectory, "tune.json");

    /// <summary>Matrices reported as repacked, in order (the model releases their mapped pages).</summary>
    private readonly List<string> _repacked = [];

    private KernelSelection Select(WeightMatrix[] matrices, ICandidateTimer timer, KernelOptions? options = null, string? model = "model.gguf|1|2",
        params FakeKernel[] repackers)
    {
        options ??= new KernelOptions { Preference = KernelPreference.Auto, CachePath = null };
        var selector = new KernelSelector(options, model, Cpu, t => t == GgmlType.F16 ? _madF16 : _mad,
            t => t == GgmlType.F32 ? repackers : [], timer, m => _repacked.Add(m.Name));
        return selector.Apply(matrices);
    }

    private WeightMatrix[] Layers(int count, int rows = 8, int columns = 64) =>
        Enumerable.Range(0, count).Select(i => _matrices.Add($"blk.{i}", rows, columns, i + 1)).ToArray();

    [Fact]
    public void The_fastest_candidate_wins_and_every_matrix_of_the_shape_uses_it()
    {
        var layers = Layers(3);
        var timer = new FakeTimer(("mad", 3e-6), ("lut a", 2e-6), ("lut b", 1e-6));
        var selection = Select(layers, timer, repackers: [_lutA, _lutB]);

        Assert.All(layers, m => Assert.Same(_lutB, m.Kernel));
        Assert.All(layers, m => Assert.Equal(m.ByteSize, m.RepackedBytes));
        // Timed once per candidate in each round, the rounds starting at a different candidate, on the shape's
        // first matrix only.
        Assert.Equal(["mad", "lut a", "lut b", "lut a", "lut b", "mad", "lut b", "mad", "lut a"], timer.DecodeCalls.Select(c => c.Kernel));
        // Only lut b is within the prompt shortlist: nothing to compare a prompt batch against.
        Assert.All(timer.Calls, c => Assert.Equal(1, c.Tokens));
        Assert.Equal(3, KernelSelector.Rounds);
        Assert.All(timer.Calls, c => Assert.Equal("blk.0", c.Matrix));
        // Each candidate warmed up once before the first round; one round (one cache eviction) per three timings.
        Assert.Equal(["mad", "lut a", "lut b"], timer.WarmUps.Select(w => w.Kernel));
        Assert.Equal(KernelSelector.Rounds, timer.Rounds);
        var choice = Assert.Single(selection.Choices);
        Assert.Equal(KernelChoiceSource.Tuned, choice.Source);
        Assert.Equal(3, choice.MatrixCount);
        Assert.Equal(["lut b", "lut a", "mad"], choice.Timings.Select(t => t.Kernel.Name));
        Assert.Equal(1, selection.TunedShapes);
        Assert.Equal(["blk.0", "blk.1", "blk.2"], _repacked);
    }

    [Fact]
    public unsafe void A_tall_matrix_is_timed_on_its_first_rows_and_gets_the_winner_for_all_of_them()
    {
        var rows = 2 * KernelSelector.TimedRows + 16;
        var output = _matrices.Add("output", rows, 16, 1);
        var timer = new FakeTimer(("mad", 3e-6), ("lut a", 1e-6));
        var selection = Select([output], timer, repackers: [_lutA]);

        Assert.NotEmpty(timer.MatrixRows);
        Assert.All(timer.MatrixRows, r => Assert.Equal(KernelSelector.TimedRows, r));
        // The whole matrix repacked for the winner, not only the timed rows, and reported once.
        Assert.Same(_lutA, output.Kernel);
        Assert.Equal(output.ByteSize, output.RepackedBytes);
        Assert.Equal(0, new ReadOnlySpan<byte>(output.KernelData, (int)output.ByteSize).SequenceCompareTo(new ReadOnlySpan<byte>(output.Data, (int)output.ByteSize)));
        Assert.Equal(["output"], _repacked);
        // Times stand for the whole matrix: the timed rows' time scaled by rows / timed rows.
        var timings = Assert.Single(selection.Choices).Timings;
        Assert.Equal(["lut a", "mad"], timings.Select(t => t.Kernel.Name));
        Assert.Equal(1.0 * rows / KernelSelector.TimedRows, timings[0].Microseconds, 1);
        Assert.Equal(3.0 * rows / KernelSelector.TimedRows, timings[1].Microseconds, 1);
    }

    [Fact]
    public void A_faster_mad_keeps_the_mapped_weights_and_no_copy()
    {
        var layers = Layers(2);
        Select(layers, new FakeTimer(("mad", 1e-6), ("lut a", 2e-6)), repackers: [_lutA]);
        Assert.All(layers, m => Assert.Same(_mad, m.Kernel));
        Assert.All(layers, m => Assert.Equal(0, m.RepackedBytes));
        Assert.All(layers, m => Assert.True(SameWeights(m)));
        Assert.Empty(_repacked);
    }

    private static unsafe bool SameWeights(WeightMatrix m) => m.KernelData == m.Data;

    [Theory]
    [InlineData(1.00e-6, 1.00e-6, 1.00e-6, "lut a")]
    [InlineData(1.00e-6, 1.02e-6, 1.01e-6, "lut a")] // all within the noise margin: registration order
    [InlineData(1.00e-6, 1.09e-6, 1.05e-6, "lut a")] // all within the noise margin: registration order
    [InlineData(1.00e-6, 1.15e-6, 1.02e-6, "lut b")] // a is clearly slower; b ties with MAD and is listed first
    [InlineData(1.00e-6, 1.15e-6, 1.15e-6, "mad")]
    public void Candidates_within_the_noise_margin_of_the_fastest_go_in_registration_order(double mad, double a, double b, string winner)
    {
        var layers = Layers(1);
        var selection = Select(layers, new FakeTimer(("mad", mad), ("lut a", a), ("lut b", b)), repackers: [_lutA, _lutB]);
        Assert.Equal(winner, layers[0].Kernel.Name);
        Assert.Equal(winner, Assert.Single(selection.Choices).Timings[0].Kernel.Name);
    }

    [Theory]
    // The multiply-add kernel decodes 20 % faster, but the interleaved one's GEMM tiles make a prompt token 3x cheaper.
    [InlineData(1.2e-6, 0.3e-6, "lut a")]
    // Equal prompt speed: decode decides (2.3 against 2.0 is beyond the noise margin).
    [InlineData(1.3e-6, 1.0e-6, "mad")]
    // Beyond the shortlist no prompt gain counts, and no prompt batch is timed.
    [InlineData(1.6e-6, 0.01e-6, "mad")]
    public void Shortlisted_candidates_are_ranked_by_a_decoded_plus_a_prompt_token(double lutDecode, double lutPromptPerToken, string winner)
    {
        var layers = Layers(1);
        var timer = new FakeTimer(("mad", 1e-6), ("lut a", lutDecode)) { PromptSeconds = { ["lut a"] = lutPromptPerToken } };
        var selection = Select(layers, timer, repackers: [_lutA]);

        Assert.Equal(winner, layers[0].Kernel.Name);
        var shortlisted = lutDecode <= KernelSelector.PromptShortlist * 1e-6;
        var promptCalls = timer.Calls.Where(c => c.Tokens > 1).ToArray();
        Assert.Equal(shortlisted ? 2 * KernelSelector.Rounds : 0, promptCalls.Length);
        Assert.All(promptCalls, c => Assert.Equal(KernelSelector.PromptTokens, c.Tokens));
        // Only the decode rounds evict the caches; prompt batches are timed warm, as a prompt's later tiles read them.
        Assert.Equal(KernelSelector.Rounds, timer.Rounds);
        var lut = Assert.Single(Assert.Single(selection.Choices).Timings, t => t.Kernel.Name == "lut a");
        Assert.Equal(lutDecode * 1e6, lut.Microseconds, 6);
        Assert.Equal(shortlisted ? lutPromptPerToken * 1e6 : null, lut.PromptMicroseconds);
    }

    [Fact]
    public void A_prompt_batch_slower_per_token_than_a_decoded_token_is_timed_again()
    {
        var layers = Layers(1);
        // lut a's GEMM tiles make a prompt token 0.3 µs, but interference slowed all of its first rounds 10x (3 µs per
        // token, three times its decode): timed again, it wins; taken at face value, mad (0.9 + 0.9) would.
        var timer = new FakeTimer(("mad", 0.9e-6), ("lut a", 1e-6))
        {
            PromptSeconds = { ["lut a"] = 0.3e-6, ["mad"] = 0.9e-6 },
            FirstPromptPenalty = ("lut a", 10, KernelSelector.Rounds),
        };
        var selection = Select(layers, timer, repackers: [_lutA]);

        Assert.Same(_lutA, layers[0].Kernel);
        Assert.Equal(2 * KernelSelector.Rounds, timer.Calls.Count(c => c.Kernel == "lut a" && c.Tokens > 1));
        Assert.Equal(KernelSelector.Rounds, timer.Calls.Count(c => c.Kernel == "mad" && c.Tokens > 1));
        Assert.Equal(0.3, Assert.Single(selection.Choices).Timings.Single(t => t.Kernel.Name == "lut a").PromptMicroseconds!.Value, 6);
    }

    [Fact]
    public void A_candidate_far_behind_after_two_rounds_is_not_timed_again()
    {
        var layers = Layers(1);
        var timer = new FakeTimer(("mad", 4e-6), ("lut a", 1e-6), ("lut b", 1.1e-6));
        var selection = Select(layers, timer, repackers: [_lutA, _lutB]);

        Assert.Equal(2, timer.Calls.Count(c => c.Kernel == "mad"));
        Assert.Equal(KernelSelector.Rounds, timer.DecodeCalls.Count(c => c.Kernel == "lut a"));
        Assert.Same(_lutA, layers[0].Kernel);
        Assert.Equal(["lut a", "lut b", "mad"], Assert.Single(selection.Choices).Timings.Select(t => t.Kernel.Name));
    }

    [Fact]
    public void One_burst_of_interference_does_not_drop_a_candidate()
    {
        var layers = Layers(1);
        // lut b is the fastest, but its first measurement is 5x slow: more than HopelessFactor behind lut a.
        var timer = new FakeTimer(("mad", 3e-6), ("lut a", 1.5e-6), ("lut b", 1e-6)) { FirstCallPenalty = ("lut b", 5) };
        Select(layers, timer, repackers: [_lutA, _lutB]);
        Assert.Equal(KernelSelector.Rounds, timer.DecodeCalls.Count(c => c.Kernel == "lut b"));
        Assert.Same(_lutB, layers[0].Kernel);
    }

    [Fact]
    public void Shapes_with_one_candidate_are_not_timed()
    {
        var f16 = _matrices.Add("f16", 8, 64, 1, GgmlType.F16);
        var refused = _matrices.Add("refused", 4, 64, -1);
        var timer = new FakeTimer();
        var selection = Select([f16, refused], timer, repackers: [new FakeKernel("picky", repacks: true) { Refuses = v => v < 0 }]);

        Assert.Empty(timer.Calls);
        Assert.Same(_madF16, f16.Kernel);
        Assert.Same(_mad, refused.Kernel);
        Assert.All(selection.Choices, c => Assert.Equal(KernelChoiceSource.OnlyCandidate, c.Source));
        Assert.Equal(0, selection.TunedShapes);
    }

    [Fact]
    public void Lut_and_interleaved_preferences_take_the_first_acceptor_of_their_family_untimed()
    {
        var interleaved = new FakeKernel("interleaved", repacks: true);
        var table = new FakeKernel("table", repacks: true) { LookupTables = true };
        var layers = Layers(2);
        var timer = new FakeTimer();

        Select(layers, timer, new KernelOptions { Preference = KernelPreference.Lut, CachePath = null }, repackers: [interleaved, table]);
        Assert.All(layers, m => Assert.Same(table, m.Kernel));
        Select(layers, timer, new KernelOptions { Preference = KernelPreference.Interleaved, CachePath = null }, repackers: [table, interleaved]);
        Assert.All(layers, m => Assert.Same(interleaved, m.Kernel));
        Select(layers, timer, new KernelOptions { Preference = KernelPreference.Lut, CachePath = null }, repackers: [interleaved]);
        Assert.All(layers, m => Assert.Same(_mad, m.Kernel)); // no table kernel: MAD
        Assert.Empty(timer.Calls);
    }

    [Fact]
    public void A_matrix_the_winner_refuses_takes_the_next_fastest_that_accepts_it()
    {
        var first = _matrices.Add("first", 8, 64, 1);
        var odd = _matrices.Add("odd", 8, 64, 7);
        var picky = new FakeKernel("lut a", repacks: true) { Refuses = v => v == 7 };
        Select([first, odd], new FakeTimer(("mad", 3e-6), ("lut a", 1e-6), ("lut b", 2e-6)), repackers: [picky, _lutB]);
        Assert.Same(picky, first.Kernel);
        Assert.Same(_lutB, odd.Kernel);
        Assert.Equal(["first", "odd"], _repacked);
    }

    [Fact]
    public void Mad_preference_never_repacks_and_repacked_preference_takes_the_first_acceptor_untimed()
    {
        var picky = new FakeKernel("lut a", repacks: true) { Refuses = v => v == 2 };
        var layers = Layers(2);
        var timer = new FakeTimer();

        var mad = Select(layers, timer, new KernelOptions { Preference = KernelPreference.Mad, CachePath = null }, repackers: [picky, _lutB]);
        Assert.All(layers, m => Assert.Same(_mad, m.Kernel));
        Assert.All(layers, m => Assert.Equal(0, m.RepackedBytes));
        Assert.Equal(KernelChoiceSource.Preference, Assert.Single(mad.Choices).Source);

        Select(layers, timer, new KernelOptions { Preference = KernelPreference.Repacked, CachePath = null }, repackers: [picky, _lutB]);
        Assert.Same(picky, layers[0].Kernel);
        Assert.Same(_lutB, layers[1].Kernel); // value 2: refused by the first candidate
        Assert.Empty(timer.Calls);
    }

    [Fact]
    public void Without_tuning_or_a_cached_decision_the_first_accepting_repacked_kernel_is_used()
    {
        var layers = Layers(2);
        var timer = new FakeTimer();
        var selection = Select(layers, timer, new KernelOptions { Tune = false, CachePath = CachePath, Preference = KernelPreference.Auto },
            repackers: [_lutA, _lutB]);
        Assert.Empty(timer.Calls);
        Assert.All(layers, m => Assert.Same(_lutA, m.Kernel));
        Assert.Equal(KernelChoiceSource.Untuned, Assert.Single(selection.Choices).Source);
        Assert.False(File.Exists(CachePath)); // nothing decided, nothing written
    }

    [Fact]
    public void A_tuned_decision_is_cached_and_reused_without_timing()
    {
        var options = new KernelOptions { Preference = KernelPreference.Auto, CachePath = CachePath };
        var first = Layers(2);
        Select(first, new FakeTimer(("mad", 3e-6), ("lut a", 1.4e-6), ("lut b", 1e-6)) { PromptSeconds = { ["lut b"] = 0.5e-6 } }, options,
            repackers: [_lutA, _lutB]);
        Assert.True(File.Exists(CachePath));

        var again = Layers(2);
        var timer = new FakeTimer();
        var selection = Select(again, timer, options, repackers: [_lutA, _lutB]);
        Assert.Empty(timer.Calls);
        Assert.All(again, m => Assert.Same(_lutB, m.Kernel));
        var choice = Assert.Single(selection.Choices);
        Assert.Equal(KernelChoiceSource.Cached, choice.Source);
        Assert.Equal(["lut b", "lut a", "mad"], choice.Timings.Select(t => t.Kernel.Name));
        Assert.Equal([1.0, 1.4, 3.0], choice.Timings.Select(t => t.Microseconds));
        Assert.Equal([0.5, 1.4, null], choice.Timings.Select(t => t.PromptMicroseconds));

        // Even with tuning off, a cached decision applies.
        var untuned = Layers(1);
        Select(untuned, timer, options with { Tune = false }, repackers: [_lutA, _lutB]);
        Assert.Same(_lutB, untuned[0].Kernel);
        Assert.Empty(timer.Calls);
    }

    [Fact]
    public void A_burst_of_interference_in_one_round_does_not_decide_the_ranking()
    {
        var layers = Layers(1);
        // lut b is the faster kernel, but its first measurement caught a neighbour's burst (5x slower).
        var timer = new FakeTimer(("mad", 3e-6), ("lut a", 2e-6), ("lut b", 1e-6)) { FirstCallPenalty = ("lut b", 5) };
        var selection = Select(layers, timer, repackers: [_lutA, _lutB]);
        Assert.Same(_lutB, layers[0].Kernel);
        Assert.Equal(1.0, Assert.Single(selection.Choices).Timings[0].Microseconds); // its best round
    }

    [Fact]
    public void A_different_model_thread_count_or_candidate_list_is_tuned_again()
    {
        var options = new KernelOptions { Preference = KernelPreference.Auto, CachePath = CachePath };
        Select(Layers(1), new FakeTimer(("mad", 3e-6), ("lut a", 1e-6)), options, repackers: [_lutA]);

        var timer = new FakeTimer(("mad", 1e-6), ("lut a", 3e-6), ("lut b", 2e-6));
        Select(Layers(1), timer, options, model: "other.gguf|1|2", repackers: [_lutA]);
        Assert.Equal(2 * KernelSelector.Rounds, timer.DecodeCalls.Count());
        Select(Layers(1), timer, options with { Threads = 2 }, repackers: [_lutA]);
        Assert.Equal(4 * KernelSelector.Rounds, timer.DecodeCalls.Count());
        var withNewKernel = Layers(1);
        Select(withNewKernel, timer, options, repackers: [_lutA, _lutB]);
        Assert.Equal(7 * KernelSelector.Rounds, timer.DecodeCalls.Count());
        Assert.Same(_mad, withNewKernel[0].Kernel);
        // Another shape of the same model is its own decision.
        Select(Layers(1, rows: 16), timer, options, repackers: [_lutA]);
        Assert.Equal(9 * KernelSelector.Rounds, timer.DecodeCalls.Count());
        // The first decision is still there.
        var cached = Layers(1);
        Select(cached, timer, options, repackers: [_lutA]);
        Assert.Equal(9 * KernelSelector.Rounds, timer.DecodeCalls.Count());
        Assert.Same(_lutA, cached[0].Kernel);
    }

    [Fact]
    public void An_in_memory_model_is_tuned_but_never_cached()
    {
        var options = new KernelOptions { Preference = KernelPreference.Auto, CachePath = CachePath };
        Select(Layers(1), new FakeTimer(("mad", 3e-6), ("lut a", 1e-6)), options, model: null, repackers: [_lutA]);
        Assert.False(File.Exists(CachePath));
    }

    [Fact]
    public void The_kernel_preference_parses_its_names_and_rejects_others()
    {
        Assert.Equal(KernelPreference.Auto, KernelOptions.ParsePreference("auto", "x"));
        Assert.Equal(KernelPreference.Mad, KernelOptions.ParsePreference(" MAD ", "x"));
        Assert.Equal(KernelPreference.Repacked, KernelOptions.ParsePreference("Repacked", "x"));
        Assert.Equal(KernelPreference.Lut, KernelOptions.ParsePreference("lut", "x"));
        Assert.Equal(KernelPreference.Interleaved, KernelOptions.ParsePreference("interleaved", "x"));
        var e = Assert.Throws<ArgumentException>(() => KernelOptions.ParsePreference("table", "--kernel"));
        Assert.Contains("--kernel: 'table' is not a kernel choice (auto, mad, repacked, lut or interleaved)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_real_timer_prepares_the_input_once_untimed_before_each_timed_product()
    {
        // In decode a matrix's weights come from memory but its input was just prepared, so each measurement first
        // prepares the input untimed (leaving it in cache), then times a preparation and the product.
        var m = _matrices.Add("real", 64, 256, 0.5f);
        var kernel = new FakeKernel("counted", repacks: false);
        using var timer = new PoolCandidateTimer(threads: 1);
        unsafe
        {
            Assert.True(timer.Seconds(m, kernel, m.Data, tokens: 1) > 0);
        }
        Assert.Equal(2, kernel.Preparations);
        Assert.Equal(1, kernel.Products);
    }

    [Fact]
    public void The_real_timer_measures_a_real_kernel_split_over_threads()
    {
        // No timing assertion: the measurement completes, is positive, and leaves the matrix untouched.
        var m = _matrices.Add("real", 64, 256, 0.5f);
        using var timer = new PoolCandidateTimer(threads: 2);
        unsafe
        {
            var kernel = KernelTable.Get(GgmlType.F32);
            Assert.True(timer.Seconds(m, kernel, m.Data, tokens: 1) > 0 && timer.Seconds(m, kernel, m.Data, tokens: 3) > 0);
        }
        var row = new float[m.Columns];
        m.DequantizeRow(63, row);
        Assert.All(row, v => Assert.Equal(0.5f, v));
    }
}
