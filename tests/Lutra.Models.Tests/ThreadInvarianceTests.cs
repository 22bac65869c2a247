using Lutra.Core.Quants;
using Lutra.Models.Synthetic;

namespace Lutra.Models.Tests;

/// <summary>
/// Logits do not depend on the thread count: every output row is computed whole by one thread, including when
/// Q/K/V and gate/up share one split of the pool, when a matrix is smaller than a thread's share, and when each
/// thread reads its own copy of a lookup-table kernel's activation tables.
/// </summary>
public sealed class ThreadInvarianceTests : IDisposable
{
    // 8:2 heads of 128: Q is 1024 rows, K and V 256 (one ternary LUT tile each), gate/up 2048.
    private static readonly SyntheticShape Shape = new("threads", "llama", 1024, 2048, 2, 8, 2, 320, 64, TiedOutput: false, QkvBias: false);
    private static readonly int[] Prompt = [1, 17, 200, 5, 93, 44, 8];

    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-threads-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(GgmlType.Q4_0, KernelPreference.Mad)]
    [InlineData(GgmlType.Q4_0, KernelPreference.Interleaved)]
    [InlineData(GgmlType.TQ1_0, KernelPreference.Lut)]
    [InlineData(GgmlType.Q4_0, KernelPreference.Lut)]
    [InlineData(GgmlType.Q4_K, KernelPreference.Interleaved)]
    public void Prefill_and_decode_logits_are_the_same_at_one_two_and_three_threads(GgmlType type, KernelPreference preference)
    {
        var path = Path.Combine(_dir, $"{type}.gguf");
        SyntheticModel.Create(Shape, type).Write(path);
        var expected = Run(path, preference, threads: 1);
        Assert.Equal(expected, Run(path, preference, threads: 2));
        Assert.Equal(expected, Run(path, preference, threads: 3));
    }

    /// <summary>The prompt's logits (one batch) followed by three decoded tokens' logits.</summary>
    private static float[] Run(string path, KernelPreference preference, int threads)
    {
        using var model = Transformer.Load(path, new KernelOptions { Preference = preference, Threads = threads, CachePath = null });
        using var state = model.CreateState(new InferenceOptions { ContextSize = 64, Threads = threads });
        var vocab = model.VocabSize;
        var logits = new List<float>();
        var all = new float[Prompt.Length * vocab];
        model.Forward(state, Prompt, 0, allLogits: true, all);
        logits.AddRange(all);
        for (var t = 0; t < 3; t++)
        {
            model.Forward(state, [Prompt[t]], Prompt.Length + t, allLogits: false, []);
            logits.AddRange(state.LastLogits.ToArray());
        }
        return [.. logits];
    }
}
