using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models.Tuning;
using Lutra.Tests;

namespace Lutra.Models.Tests.Tuning;

/// <summary>Whichever kernels a model is given, its logits stay within llama.cpp's (shared/reference/README.md §2).</summary>
public class KernelChoiceLogitsTests
{
    [Theory]
    [InlineData("tiny-synth-TQ1_0", KernelPreference.Mad)]
    [InlineData("tiny-synth-TQ1_0", KernelPreference.Repacked)]
    [InlineData("tiny-synth-TQ1_0", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-TQ2_0", KernelPreference.Mad)]
    [InlineData("tiny-synth-TQ2_0", KernelPreference.Repacked)]
    [InlineData("tiny-synth-TQ2_0", KernelPreference.Auto)]
    [InlineData("tiny-synth-TQ2_0", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-TQ2_0", KernelPreference.Lut)]
    [InlineData("tiny-synth-Q4_0", KernelPreference.Repacked)]
    [InlineData("tiny-synth-Q4_0", KernelPreference.Lut)]
    [InlineData("tiny-synth-Q4_0", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-F16", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-Q4_K_S", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-Q6_K", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-Q4_1", KernelPreference.Repacked)]
    [InlineData("tiny-synth-Q4_1", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-Q4_1", KernelPreference.Lut)]
    [InlineData("tiny-synth-Q8_0", KernelPreference.Repacked)]
    [InlineData("tiny-synth-Q2_K", KernelPreference.Repacked)]
    [InlineData("tiny-synth-Q2_K", KernelPreference.Interleaved)]
    [InlineData("tiny-synth-Q2_K", KernelPreference.Lut)]
    public void Forced_kernels_match_llama_cpp(string stem, KernelPreference preference)
    {
        ReferenceLogits.RequireKernels(stem + ".gguf");
        var kernels = new KernelOptions { Preference = preference, CachePath = null };
        var tokens = ReferenceLogits.Tokens(stem);
        var ours = ReferenceLogits.Evaluate(stem + ".gguf", tokens, new InferenceOptions(), kernels);
        var c = ReferenceLogits.Compare(ours, ReferenceLogits.Read(stem + ".logits.f32"), 512);
        // The bar of LogitsTests.Quantized_model_matches_llama_cpp_within_activation_rounding_noise.
        Assert.True(c.MeanAbs <= 0.1, c.ToString());
        Assert.True(c.Top1Agreement >= 0.95 || c.DecisiveDisagreements == 0, c.ToString());
    }

    /// <summary>Q2_K has both repacking families: each forced family must get its own kernel, not the other's.</summary>
    [Theory]
    [InlineData(KernelPreference.Interleaved)]
    [InlineData(KernelPreference.Lut)]
    public void Forced_families_give_Q2_K_their_own_kernel(KernelPreference preference)
    {
        var path = SharedData.Model("tiny-synth-Q2_K.gguf");
        var offered = KernelTable.RepackingKernels(Lutra.Core.Quants.GgmlType.Q2_K, KernelIsa.Selected)
            .Where(k => k.UsesLookupTables == (preference == KernelPreference.Lut)).ToArray();
        if (offered.Length == 0)
            Assert.Skip($"this machine has no {preference} kernel for Q2_K");
        using var model = Transformer.Load(path, new KernelOptions { Preference = preference, CachePath = null });
        var q2k = model.Weights.Matrices.Where(m => m.Type == Lutra.Core.Quants.GgmlType.Q2_K).ToArray();
        Assert.NotEmpty(q2k);
        // Every tiny-synth matrix has whole tiles of either family, so every one is repacked by the first offered kernel.
        Assert.All(q2k, m => Assert.Same(offered[0], m.Kernel));
    }

    /// <summary>Forced interleaved, every Q4_1 matrix of tiny-synth-Q4_1 runs on the Q4_1 interleaved kernel (so the logits test above covers it).</summary>
    [Fact]
    public void Forced_interleaved_puts_Q4_1_matrices_on_the_Q4_1_interleaved_kernel()
    {
        var path = SharedData.Model("tiny-synth-Q4_1.gguf");
        if (!Q4_1InterleavedMatVec.IsSupported(KernelIsa.Selected))
            Assert.Skip($"no interleaved Q4_1 kernel at {KernelIsa.Selected}");
        using var model = Transformer.Load(path, new KernelOptions { Preference = KernelPreference.Interleaved, CachePath = null });
        var q41 = model.Weights.Matrices.Where(m => m.Type == GgmlType.Q4_1).ToArray();
        Assert.NotEmpty(q41);
        Assert.All(q41, m => Assert.IsType<Q4_1InterleavedMatVec>(m.Kernel));
    }

    private static bool Accepts(WeightMatrix m, MatVecKernel kernel)
    {
        using var copy = m.TryRepack(kernel);
        return copy is not null;
    }

    [Theory]
    [InlineData("tiny-synth-TQ1_0")]
    [InlineData("tiny-synth-TQ2_0")]
    [InlineData("tiny-synth-Q4_0")]
    public void The_preference_decides_which_kind_of_kernel_each_matrix_gets(string stem)
    {
        var path = SharedData.Model(stem + ".gguf");
        using (var mad = Transformer.Load(path, new KernelOptions { Preference = KernelPreference.Mad, CachePath = null }))
        {
            Assert.All(mad.Weights.Matrices, m => Assert.False(m.Kernel.RepacksWeights, m.ToString()));
            Assert.All(mad.Weights.Matrices, m => Assert.Equal(0, m.RepackedBytes));
            Assert.All(mad.Kernels.Choices, c => Assert.NotEqual(KernelChoiceSource.Tuned, c.Source));
        }
        using var repacked = Transformer.Load(path, new KernelOptions { Preference = KernelPreference.Repacked, CachePath = null });
        foreach (var m in repacked.Weights.Matrices)
        {
            // Where this build has a repacking kernel whose layout takes the matrix, the matrix is on one.
            var expectRepacked = KernelTable.RepackingKernels(m.Type, KernelIsa.Selected).Any(k => Accepts(m, k));
            Assert.Equal(expectRepacked, m.Kernel.RepacksWeights);
            Assert.Equal(expectRepacked ? m.RepackedByteSize(m.Kernel) : 0, m.RepackedBytes);
        }
    }

    [Theory]
    [InlineData(KernelPreference.Interleaved)]
    [InlineData(KernelPreference.Lut)]
    public void Forcing_a_family_puts_every_ternary_matrix_on_that_family(KernelPreference preference)
    {
        var path = SharedData.Model("tiny-synth-TQ2_0.gguf");
        var lookup = preference == KernelPreference.Lut;
        using var model = Transformer.Load(path, new KernelOptions { Preference = preference, CachePath = null });
        foreach (var m in model.Weights.Matrices.Where(m => m.Type == GgmlType.TQ2_0))
        {
            var family = KernelTable.RepackingKernels(m.Type, KernelIsa.Selected).Where(k => k.UsesLookupTables == lookup).ToArray();
            Assert.Equal(family.Any(k => Accepts(m, k)), m.Kernel.RepacksWeights);
            if (m.Kernel.RepacksWeights)
                Assert.Equal(lookup, m.Kernel.UsesLookupTables);
            if (!lookup && TQ2_0InterleavedMatVec.IsSupportedAt(KernelIsa.Selected))
                Assert.IsType<TQ2_0InterleavedMatVec>(m.Kernel);
            if (KernelIsa.Selected == InstructionSet.Avx512 && lookup && TernaryLutMatVecAvx512.IsSupported)
                Assert.IsType<TQ2_0LutMatVecAvx512>(m.Kernel);
        }
    }

    /// <summary>
    /// Forced interleaved, every TQ1_0 matrix runs on TQ2_0's tiles where this instruction set has them, in a copy
    /// 66/54 of its GGUF size whose stride the forward pass uses (the logits test above checks the result).
    /// </summary>
    [Fact]
    public void Forced_interleaved_puts_TQ1_0_matrices_on_TQ2_0_tiles_in_a_wider_copy()
    {
        var path = SharedData.Model("tiny-synth-TQ1_0.gguf");
        if (!TQ2_0InterleavedMatVec.IsSupportedAt(KernelIsa.Selected))
            Assert.Skip($"no interleaved TQ2_0 kernel at {KernelIsa.Selected}");
        using var model = Transformer.Load(path, new KernelOptions { Preference = KernelPreference.Interleaved, CachePath = null });
        var tq1 = model.Weights.Matrices.Where(m => m.Type == GgmlType.TQ1_0).ToArray();
        Assert.NotEmpty(tq1);
        foreach (var m in tq1)
        {
            Assert.IsType<TQ1_0InterleavedMatVec>(m.Kernel);
            Assert.Equal((long)m.RowBytes / 54 * 66, m.KernelRowBytes);
            Assert.Equal(m.Rows * m.KernelRowBytes, m.RepackedBytes);
        }
    }
}
