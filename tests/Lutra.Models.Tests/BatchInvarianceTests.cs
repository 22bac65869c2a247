using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Models;
using Lutra.Models.Blocks;
using Lutra.Models.Synthetic;
using Lutra.Tests;

namespace Lutra.Models.Tests;

/// <summary>
/// A token's logits do not depend on how the prompt was split into batches: the GEMM tiles and the per-token
/// MatVec use the same arithmetic in the same order, and attention computes each query row on its own.
/// </summary>
public class BatchInvarianceTests
{
    // Q is 1024 columns, down 2048: a ternary table kernel's prepared inputs take 50-100 KB per token, so a
    // 40-token batch is walked in groups of 4-8 tokens (MatMulWork.TokenGroup).
    private static readonly SyntheticShape Shape = new("batches", "llama", 1024, 2048, 1, 8, 2, 320, 64, TiedOutput: false, QkvBias: false);

    [Theory]
    [InlineData(GgmlType.TQ1_0, KernelPreference.Lut)]
    [InlineData(GgmlType.TQ2_0, KernelPreference.Lut)]
    [InlineData(GgmlType.Q4_0, KernelPreference.Lut)]
    [InlineData(GgmlType.TQ1_0, KernelPreference.Interleaved)]
    public void A_prompt_walked_in_token_groups_gives_the_logits_of_token_by_token_decode(GgmlType type, KernelPreference preference)
    {
        if (KernelIsa.Selected != InstructionSet.Avx512)
            Assert.Skip("bit-identical batching is a property of the AVX-512 kernels (the ternary tables exist only there)");
        var dir = Directory.CreateTempSubdirectory("lutra-batches-").FullName;
        try
        {
            var path = Path.Combine(dir, "m.gguf");
            SyntheticModel.Create(Shape, type).Write(path);
            using var model = Transformer.Load(path, new KernelOptions { Preference = preference, CachePath = null });
            Assert.Contains(model.Weights.Layers[0].Down.Kernel, KernelTable.RepackingKernels(type, KernelIsa.Selected));
            var tokens = Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % Shape.VocabSize).ToArray();
            AssertBatchedEqualsSingle(model, tokens);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(100 * 1024, 40, 4)]
    [InlineData(50 * 1024, 40, 8)]
    [InlineData(400 * 1024, 128, 4)]
    [InlineData(2 * 1024, 128, 128)]
    [InlineData(100 * 1024, 3, 3)]
    [InlineData(1024 * 1024, 2, 2)]
    [InlineData(1024 * 1024, 9, 4)]
    public void Token_groups_keep_a_few_hundred_KB_of_inputs_in_cache_in_whole_GEMM_tiles(int stride, int tokens, int group) =>
        Assert.Equal(group, MatMulWork.TokenGroup(stride, tokens));

    private static void AssertBatchedEqualsSingle(Transformer model, int[] tokens)
    {
        var vocab = model.VocabSize;
        using var batched = model.CreateState(new InferenceOptions { ContextSize = 64 });
        var all = new float[tokens.Length * vocab];
        model.Forward(batched, tokens, 0, allLogits: true, all);

        using var single = model.CreateState(new InferenceOptions { ContextSize = 64 });
        for (var t = 0; t < tokens.Length; t++)
        {
            model.Forward(single, tokens.AsSpan(t, 1), t, allLogits: false, []);
            Assert.Equal(all.AsSpan(t * vocab, vocab).ToArray(), single.LastLogits);
        }
    }

    [Theory]
    [InlineData("stories260K.gguf")]
    [InlineData("stories260K-Q8_0.gguf")]
    [InlineData("stories260K-Q4_0.gguf")]
    public void Batched_prefill_and_token_by_token_decode_give_identical_logits(string file)
    {
        if (KernelIsa.Selected != InstructionSet.Avx512)
            Assert.Skip("bit-identical batching is a property of the AVX-512 Q4_0, Q8_0 and float kernels");
        var tokens = ReferenceLogits.Tokens("stories260K")[..40];
        using var model = Transformer.Load(SharedData.Model(file));
        AssertBatchedEqualsSingle(model, tokens);
    }
}
