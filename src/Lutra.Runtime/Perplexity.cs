using Lutra.Models;

namespace Lutra.Runtime;

/// <param name="Perplexity">exp(mean NLL) over every scored token.</param>
/// <param name="Uncertainty">llama-perplexity's ± value: PPL · sqrt(var(NLL) / (count − 1)).</param>
/// <param name="RunningPerplexity">Cumulative estimate after each chunk (llama-perplexity's [i] values).</param>
public sealed record PerplexityResult(double Perplexity, double Uncertainty, int ScoredTokens, IReadOnlyList<double> RunningPerplexity);

/// <summary>
/// llama-perplexity's default method: the text is cut into chunks of the context size; each chunk starts with BOS
/// (replacing its first token), is evaluated as one batch from position 0, and only its second half is scored.
/// </summary>
public static class Perplexity
{
    public static PerplexityResult Compute(LutraModel model, ReadOnlySpan<int> tokens, int chunkSize, int? bosId,
        Action<int, double>? onChunk = null, int threads = 1, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (chunkSize < 4)
            throw new ArgumentException($"context size {chunkSize} is too small for perplexity (need at least 4)");
        var chunks = tokens.Length / chunkSize;
        if (chunks < 2)
            throw new ArgumentException(
                $"perplexity needs at least 2 × {chunkSize} tokens; the text has {tokens.Length}. Use a smaller context size (-c)");

        using var context = model.CreateContext(new InferenceOptions { ContextSize = chunkSize, BatchSize = chunkSize, Threads = threads });
        var vocab = model.VocabSize;
        var logits = new float[chunkSize * vocab];
        var chunk = new int[chunkSize];
        var first = chunkSize / 2;
        double nll = 0, nll2 = 0;
        var count = 0;
        var running = new List<double>(chunks);
        for (var c = 0; c < chunks; c++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            tokens.Slice(c * chunkSize, chunkSize).CopyTo(chunk);
            if (bosId is int bos)
                chunk[0] = bos;
            context.Clear();
            context.EvaluateAll(chunk, logits);
            // Logits at position i predict the token at i + 1; score i in [n/2, n−1).
            for (var i = first; i < chunkSize - 1; i++)
            {
                var v = -LogSoftmax(logits.AsSpan(i * vocab, vocab), tokens[c * chunkSize + i + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
            var ppl = Math.Exp(nll / count);
            running.Add(ppl);
            onChunk?.Invoke(c, ppl);
        }
        var mean = nll / count;
        var variance = nll2 / count - mean * mean;
        var perplexity = Math.Exp(mean);
        var uncertainty = variance > 0 ? perplexity * Math.Sqrt(variance / (count - 1)) : 0;
        return new PerplexityResult(perplexity, uncertainty, count, running);
    }

    private static double LogSoftmax(ReadOnlySpan<float> logits, int token)
    {
        var max = float.NegativeInfinity;
        foreach (var l in logits)
            max = Math.Max(max, l);
        var sum = 0.0;
        foreach (var l in logits)
            sum += Math.Exp(l - max);
        return logits[token] - max - Math.Log(sum);
    }
}
