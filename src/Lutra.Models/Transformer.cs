using System.Numerics;
using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Gguf;
using Lutra.Models.Blocks;
using Lutra.Models.Tuning;

namespace Lutra.Models;

/// <summary>
/// A llama-family decoder (llama, qwen2) over a memory-mapped GGUF file: the forward pass of formats.md §5.1,
/// built from the shared blocks. Immutable after load; each generation context brings its own
/// <see cref="InferenceState"/>, so contexts can run concurrently.
/// </summary>
public sealed class Transformer : IDisposable
{
    private readonly GgufFile _file;
    private readonly bool _ownsFile;
    private readonly Rope _rope;

    private Transformer(GgufFile file, bool ownsFile, KernelOptions kernels)
    {
        _file = file;
        _ownsFile = ownsFile;
        if (!file.TryGetTensor(TensorNames.TokenEmbedding, out var embedding))
            throw new GgufFormatException($"required tensor '{TensorNames.TokenEmbedding}' is missing from the model");
        if (embedding.Shape.Length != 2 || embedding.Shape[1] > int.MaxValue)
            throw new GgufFormatException($"tensor '{embedding.Name}' must be 2-D [n_embd, n_vocab]");
        HyperParameters = HyperParameters.FromMetadata(file.Metadata, (int)embedding.Shape[1]);
        Weights = TransformerWeights.Load(file, HyperParameters);
        var identity = ModelIdentity(file);
        var repackCache = kernels.RepackCacheDirectory is not null && identity is not null && kernels.Preference != KernelPreference.Mad
            ? RepackCache.Open(kernels.RepackCacheDirectory, file.Path!, identity, CpuIdentity.Value)
            : null;
        try
        {
            // A repacked copy replaces the mapped weights for every product; dropping the mapped pages keeps the
            // weights resident once (they fault back in from the file for dequantization or reference mode).
            Kernels = KernelSelector.Apply(Weights.Matrices.Distinct().ToArray(), kernels, identity, ReleaseMappedWeights, repackCache);
        }
        catch
        {
            Weights.Dispose();
            throw;
        }
        finally
        {
            repackCache?.Dispose();
        }
        _rope = new Rope(HyperParameters, Weights.RopeFreqs);
    }

    private unsafe void ReleaseMappedWeights(WeightMatrix m) => _file.ReleaseMappedPages(m.Data, m.ByteSize);

    /// <summary>The kernel chosen for each weight shape at load, and how.</summary>
    public KernelSelection Kernels { get; }

    public HyperParameters HyperParameters { get; }

    public TransformerWeights Weights { get; }

    public GgufMetadata Metadata => _file.Metadata;

    /// <summary>The mapped GGUF file the weights live in.</summary>
    public GgufFile File => _file;

    public int VocabSize => HyperParameters.VocabSize;

    /// <summary>Maps <paramref name="path"/> and picks the weights' kernels (<paramref name="kernels"/>: default options when null).</summary>
    public static Transformer Load(string path, KernelOptions? kernels = null)
    {
        var file = GgufFile.Open(path);
        try
        {
            return new Transformer(file, ownsFile: true, kernels ?? new KernelOptions());
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Builds the model over an open file; the caller keeps ownership of <paramref name="file"/>.</summary>
    public static Transformer FromFile(GgufFile file, KernelOptions? kernels = null) => new(file, ownsFile: false, kernels ?? new KernelOptions());

    /// <summary>
    /// A mapped file is named by its full path, size and last write: replacing or rewriting the file changes it.
    /// An in-memory file has no stable identity and is never cached.
    /// </summary>
    private static string? ModelIdentity(GgufFile file)
    {
        if (file.Path is null)
            return null;
        var info = new FileInfo(file.Path);
        return info.Exists ? $"{info.FullName}|{file.Length}|{info.LastWriteTimeUtc.Ticks}" : null;
    }

    public InferenceState CreateState(InferenceOptions? options = null) => new(HyperParameters, Weights, options ?? new InferenceOptions());

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at positions <paramref name="startPosition"/>.. (their K/V enter the
    /// cache). With <paramref name="allLogits"/>, <paramref name="logits"/> receives [tokens][n_vocab];
    /// otherwise only the last token's logits, into <see cref="InferenceState.LastLogits"/>.
    /// </summary>
    public void Forward(InferenceState state, ReadOnlySpan<int> tokens, int startPosition, bool allLogits, Span<float> logits)
    {
        var hp = HyperParameters;
        if (tokens.IsEmpty)
            throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        if (startPosition < 0 || startPosition + tokens.Length > state.ContextSize)
            throw new ContextFullException(startPosition, tokens.Length, state.ContextSize);
        if (allLogits && logits.Length < tokens.Length * hp.VocabSize)
            throw new ArgumentException($"logits span holds {logits.Length} floats, {tokens.Length}×{hp.VocabSize} needed", nameof(logits));
        foreach (var t in tokens)
        {
            if ((uint)t >= (uint)hp.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary [0, {hp.VocabSize})");
        }

        for (var start = 0; start < tokens.Length; start += state.BatchSize)
        {
            var n = Math.Min(state.BatchSize, tokens.Length - start);
            var last = start + n == tokens.Length;
            var rows = allLogits ? logits.Slice(start * hp.VocabSize, n * hp.VocabSize) : Span<float>.Empty;
            ForwardBatch(state, tokens.Slice(start, n), startPosition + start, allLogits, last, rows);
        }
    }

    private void ForwardBatch(InferenceState s, ReadOnlySpan<int> tokens, int startPosition, bool allLogits, bool lastBatch, Span<float> logits)
    {
        var hp = HyperParameters;
        var w = Weights;
        var n = tokens.Length;
        var dim = hp.EmbeddingLength;
        var headDim = hp.HeadDim;
        var kvDim = hp.KvDim;
        var qDim = hp.QDim;
        var ff = hp.FeedForwardLength;
        var pairs = _rope.PairCount;
        var reference = s.Reference;
        var kqScale = 1f / MathF.Sqrt(headDim);

        var x = s.X.AsSpan(0, n * dim);
        for (var t = 0; t < n; t++)
            w.TokenEmbedding.DequantizeRow(tokens[t], x.Slice(t * dim, dim));
        for (var t = 0; t < n; t++)
            _rope.Angles(startPosition + t, s.RopeCos.AsSpan(t * pairs, pairs), s.RopeSin.AsSpan(t * pairs, pairs));

        var xb = s.Xb.AsSpan(0, n * dim);
        var delta = s.Delta.AsSpan(0, n * dim);
        var q = s.Q.AsSpan(0, n * qDim);
        var k = s.K.AsSpan(0, n * kvDim);
        var v = s.V.AsSpan(0, n * kvDim);
        var att = s.Attention.AsSpan(0, n * qDim);
        var gate = s.Gate.AsSpan(0, n * ff);
        var up = s.Up.AsSpan(0, n * ff);

        for (var l = 0; l < hp.LayerCount; l++)
        {
            var layer = w.Layers[l];

            // ---- attention ----
            s.Rows.RmsNormRows(s.X, layer.AttnNorm, hp.RmsEpsilon, s.Xb, n, dim);
            s.Input.Bind(s.Xb, n, dim);
            MatMul.Multiply(s.Input, reference, s.RowScratch, s.MatMul, layer.Q, q, layer.K, k, layer.V, v);
            if (layer.QBias is not null) MatMul.AddBias(q, layer.QBias);
            if (layer.KBias is not null) MatMul.AddBias(k, layer.KBias);
            if (layer.VBias is not null) MatMul.AddBias(v, layer.VBias);

            s.Rows.RopeAndStoreRows(_rope, s.Q, s.K, s.V, s.RopeCos, s.RopeSin, s.Cache, l, startPosition, n, qDim, kvDim, headDim);
            // The scalar instruction set (LUTRA_ISA=scalar) means the plain reference arithmetic, attention included.
            if (reference || KernelIsa.Selected == InstructionSet.Scalar)
            {
                for (var t = 0; t < n; t++)
                {
                    var visible = startPosition + t + 1; // causal mask: keys at positions ≤ the query's
                    for (var h = 0; h < hp.HeadCount; h++)
                    {
                        var o = t * qDim + h * headDim;
                        s.Cache.Attend(l, h / hp.GroupSize, q.Slice(o, headDim), visible, kqScale, s.Scores, att.Slice(o, headDim));
                    }
                }
            }
            else
            {
                s.AttentionWork.Run(s.Cache, l, q, n, startPosition, kqScale, att);
            }
            s.Input.Bind(s.Attention, n, qDim);
            MatMul.Multiply(layer.Output, s.Input, delta, reference, s.RowScratch, s.MatMul);
            if (layer.OutputBias is not null) MatMul.AddBias(delta, layer.OutputBias);
            Add(x, delta);

            // ---- feed-forward ----
            s.Rows.RmsNormRows(s.X, layer.FfnNorm, hp.RmsEpsilon, s.Xb, n, dim);
            s.Input.Bind(s.Xb, n, dim);
            MatMul.Multiply(s.Input, reference, s.RowScratch, s.MatMul, layer.Gate, gate, layer.Up, up);
            if (layer.GateBias is not null) MatMul.AddBias(gate, layer.GateBias);
            if (layer.UpBias is not null) MatMul.AddBias(up, layer.UpBias);
            s.Rows.SwiGluRows(s.Gate, s.Up, n, ff);
            s.Input.Bind(s.Gate, n, ff);
            MatMul.Multiply(layer.Down, s.Input, delta, reference, s.RowScratch, s.MatMul);
            if (layer.DownBias is not null) MatMul.AddBias(delta, layer.DownBias);
            Add(x, delta);
        }

        // ---- output head: every row, or only the batch's last row ----
        if (allLogits)
        {
            s.Rows.RmsNormRows(s.X, w.OutputNorm, hp.RmsEpsilon, s.Xb, n, dim);
            s.Input.Bind(s.Xb, n, dim);
            MatMul.Multiply(w.Output, s.Input, logits, reference, s.RowScratch, s.MatMul);
        }
        else if (lastBatch)
        {
            RmsNorm.Apply(x.Slice((n - 1) * dim, dim), w.OutputNorm, hp.RmsEpsilon, xb[..dim]);
            s.Input.Bind(s.Xb, 1, dim);
            MatMul.Multiply(w.Output, s.Input, s.LastLogits, reference, s.RowScratch, s.MatMul);
        }
    }

    private static void Add(Span<float> x, ReadOnlySpan<float> delta)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            ref var xr = ref MemoryMarshal.GetReference(x);
            ref var dr = ref MemoryMarshal.GetReference(delta);
            for (; i + Vector<float>.Count <= x.Length; i += Vector<float>.Count)
                (Vector.LoadUnsafe(ref xr, (nuint)i) + Vector.LoadUnsafe(ref dr, (nuint)i)).StoreUnsafe(ref xr, (nuint)i);
        }
        for (; i < x.Length; i++)
            x[i] += delta[i];
    }

    public void Dispose()
    {
        Weights.Dispose();
        if (_ownsFile)
            _file.Dispose();
    }
}
