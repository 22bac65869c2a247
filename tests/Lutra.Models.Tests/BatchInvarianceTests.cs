using Lutra.Core.Kernels;
using Lutra.Models;
using Lutra.Tests;

namespace Lutra.Models.Tests;

/// <summary>
/// A token's logits do not depend on how the prompt was split into batches: the GEMM tiles and the per-token
/// MatVec use the same arithmetic in the same order, and attention computes each query row on its own.
/// </summary>
public class BatchInvarianceTests
{
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
}
