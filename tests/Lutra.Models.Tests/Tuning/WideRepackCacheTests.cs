using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models.Synthetic;
using Lutra.Models.Tuning;

namespace Lutra.Models.Tests.Tuning;

/// <summary>
/// A repacked layout wider than the GGUF rows (TQ1_0 converted to TQ2_0's tiles, 66/54 of its bytes) through the
/// whole load path: the copy, the forward pass's row stride and the repack cache's entry sizes.
/// </summary>
public sealed class WideRepackCacheTests : IDisposable
{
    // 320 output rows: 20 whole tiles; 512-row FFN matrices; every row length a multiple of 256.
    private static readonly SyntheticShape Shape = new("tiny", "llama", 256, 512, 2, 4, 2, 320, 64, TiedOutput: false, QkvBias: false);
    private static readonly int[] Prompt = [1, 17, 200, 5, 93];

    private readonly string _dir = Directory.CreateTempSubdirectory("lutra-wide-repack-").FullName;
    private readonly string _model;
    private readonly string _cache;

    public WideRepackCacheTests()
    {
        _model = Path.Combine(_dir, "model.gguf");
        _cache = Path.Combine(_dir, "cache");
        SyntheticModel.Create(Shape, GgmlType.TQ1_0).Write(_model);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (float[] Logits, RepackCacheReport? Report, int Wide) Run(KernelPreference preference, string? cache)
    {
        using var model = Transformer.Load(_model, new KernelOptions { Preference = preference, CachePath = null, RepackCacheDirectory = cache });
        using var state = model.CreateState();
        model.Forward(state, Prompt, 0, allLogits: false, default);
        var wide = 0;
        foreach (var m in model.Weights.Matrices.Distinct().Where(m => m.Kernel is TQ1_0InterleavedMatVec))
        {
            Assert.Equal((long)m.RowBytes / 54 * 66, m.KernelRowBytes);
            Assert.Equal(m.Rows * m.KernelRowBytes, m.RepackedBytes);
            wide++;
        }
        return (state.LastLogits.ToArray(), model.Kernels.RepackCache, wide);
    }

    [Fact]
    public void Wider_copies_give_the_multiply_add_logits_and_come_back_whole_from_the_cache()
    {
        if (!TQ2_0InterleavedMatVec.IsSupportedAt(KernelIsa.Selected))
            Assert.Skip($"no interleaved TQ2_0 kernel at {KernelIsa.Selected}");
        // Both kernels are exact (bit-identical to the reference dot), so the logits must be too.
        var (expected, _, none) = Run(KernelPreference.Mad, null);
        Assert.Equal(0, none);

        var (first, written, wide) = Run(KernelPreference.Interleaved, _cache);
        Assert.True(wide > 0);
        Assert.Equal(0, written!.MatricesRead);
        Assert.Equal(wide, written.MatricesWritten);
        Assert.Null(written.WriteError);
        Assert.Equal(expected, first);

        var (second, read, _) = Run(KernelPreference.Interleaved, _cache);
        Assert.Equal(wide, read!.MatricesRead);
        Assert.Equal(0, read.MatricesWritten);
        Assert.Equal(expected, second);
    }
}
