using Lutra.Core.Threading;
using Lutra.Models.Blocks;

namespace Lutra.Models;

/// <summary>
/// Everything one generation context computes into (llama2.c's RunState): activations for a batch of up to
/// <see cref="BatchSize"/> tokens and the KV cache. Allocated once; a forward pass allocates nothing.
/// </summary>
public sealed class InferenceState : IDisposable
{
    internal InferenceState(HyperParameters hp, TransformerWeights weights, InferenceOptions options)
    {
        var ctx = options.ContextSize > 0 ? options.ContextSize : Math.Min(hp.ContextLength, InferenceOptions.DefaultMaxContext);
        if (ctx <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), "context size must be positive");
        var batch = options.BatchSize > 0 ? Math.Min(options.BatchSize, ctx) : Math.Min(512, ctx);
        Reference = options.Reference;
        BatchSize = batch;
        Cache = new KvCache(hp.LayerCount, ctx, hp.KvDim, Reference ? KvCacheType.F32 : options.KvCacheType);

        var maxColumns = Math.Max(Math.Max(hp.EmbeddingLength, hp.QDim), hp.FeedForwardLength);
        X = new float[batch * hp.EmbeddingLength];
        Xb = new float[batch * hp.EmbeddingLength];
        Delta = new float[batch * hp.EmbeddingLength];
        Q = new float[batch * hp.QDim];
        K = new float[batch * hp.KvDim];
        V = new float[batch * hp.KvDim];
        Attention = new float[batch * hp.QDim];
        Gate = new float[batch * hp.FeedForwardLength];
        Up = new float[batch * hp.FeedForwardLength];
        RopeCos = new float[batch * hp.RopeDimensions / 2];
        RopeSin = new float[batch * hp.RopeDimensions / 2];
        Scores = new float[ctx];
        RowScratch = new float[Reference ? maxColumns : 0];
        Input = new QuantizedInput(Reference ? [] : weights.Matrices.Select(m => m.Kernel), batch, maxColumns, options.Threads);
        LastLogits = new float[hp.VocabSize];
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Threads, 1, nameof(options.Threads));
        MatMul = new MatMulWork(new ComputePool(options.Threads));
        Rows = new RowWork(MatMul.Pool);
        AttentionWork = new AttentionWork(MatMul.Pool, hp.HeadCount, hp.HeadCountKv, hp.HeadDim, ctx);
    }

    /// <summary>Stops the compute threads, if any.</summary>
    public void Dispose() => MatMul.Pool.Dispose();

    public int Threads => MatMul.Pool.ThreadCount;

    public int ContextSize => Cache.Capacity;
    public int BatchSize { get; }
    public bool Reference { get; }
    public KvCache Cache { get; }

    /// <summary>Logits of the last evaluated token when a pass asked only for the last row.</summary>
    public float[] LastLogits { get; }

    internal float[] X { get; }          // [batch][n_embd] residual stream
    internal float[] Xb { get; }         // [batch][n_embd] normed input of a sub-block
    internal float[] Delta { get; }      // [batch][n_embd] sub-block output added to the residual
    internal float[] Q { get; }          // [batch][n_head·head_dim]
    internal float[] K { get; }          // [batch][n_head_kv·head_dim]
    internal float[] V { get; }          // [batch][n_head_kv·head_dim]
    internal float[] Attention { get; }  // [batch][n_head·head_dim] concatenated head outputs
    internal float[] Gate { get; }       // [batch][n_ff]
    internal float[] Up { get; }         // [batch][n_ff]
    internal float[] RopeCos { get; }    // [batch][n_rot/2]
    internal float[] RopeSin { get; }    // [batch][n_rot/2]
    internal float[] Scores { get; }     // [n_ctx] attention weights of one head
    internal float[] RowScratch { get; } // one dequantized weight row (reference mode)
    internal QuantizedInput Input { get; }
    internal MatMulWork MatMul { get; }
    internal AttentionWork AttentionWork { get; }
    internal RowWork Rows { get; }
}
