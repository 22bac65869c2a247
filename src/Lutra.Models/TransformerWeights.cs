using Lutra.Core.Quants;
using Lutra.Gguf;

namespace Lutra.Models;

/// <summary>All weights of a llama-family model, looked up by name and shape-checked like llama.cpp's loader.</summary>
public sealed class TransformerWeights : IDisposable
{
    public required WeightMatrix TokenEmbedding { get; init; } // [n_embd, n_vocab]
    public required float[] OutputNorm { get; init; }         // [n_embd]
    public required WeightMatrix Output { get; init; }        // [n_embd, n_vocab]; token_embd when output.weight is absent
    public float[]? RopeFreqs { get; init; }                  // [n_rot/2] (llama3 rope scaling)
    public required LayerWeights[] Layers { get; init; }

    /// <summary>Every 2-D weight, for planning activation buffers.</summary>
    public IEnumerable<WeightMatrix> Matrices
    {
        get
        {
            yield return Output;
            foreach (var l in Layers)
            {
                yield return l.Q;
                yield return l.K;
                yield return l.V;
                yield return l.Output;
                yield return l.Gate;
                yield return l.Up;
                yield return l.Down;
            }
        }
    }

    /// <summary>Frees the repacked copies some kernels keep; the mapped weights belong to the file.</summary>
    public void Dispose()
    {
        TokenEmbedding.Dispose();
        foreach (var m in Matrices)
            m.Dispose();
    }

    public static TransformerWeights Load(GgufFile file, HyperParameters hp)
    {
        var loader = new Loader(file);
        var nEmbd = hp.EmbeddingLength;
        var embedding = loader.Matrix(TensorNames.TokenEmbedding, nEmbd, hp.VocabSize);
        var output = file.TryGetTensor(TensorNames.Output, out _)
            ? loader.Matrix(TensorNames.Output, nEmbd, hp.VocabSize)
            : embedding;
        var layers = new LayerWeights[hp.LayerCount];
        for (var l = 0; l < layers.Length; l++)
        {
            var biases = hp.Architecture.QkvBiasRequired;
            layers[l] = new LayerWeights
            {
                AttnNorm = loader.Vector(TensorNames.AttnNorm(l), nEmbd, required: true)!,
                Q = loader.Matrix(TensorNames.AttnQ(l), nEmbd, hp.QDim),
                K = loader.Matrix(TensorNames.AttnK(l), nEmbd, hp.KvDim),
                V = loader.Matrix(TensorNames.AttnV(l), nEmbd, hp.KvDim),
                Output = loader.Matrix(TensorNames.AttnOutput(l), hp.QDim, nEmbd),
                QBias = loader.Vector(TensorNames.AttnQBias(l), hp.QDim, biases),
                KBias = loader.Vector(TensorNames.AttnKBias(l), hp.KvDim, biases),
                VBias = loader.Vector(TensorNames.AttnVBias(l), hp.KvDim, biases),
                OutputBias = loader.Vector(TensorNames.AttnOutputBias(l), nEmbd, required: false),
                FfnNorm = loader.Vector(TensorNames.FfnNorm(l), nEmbd, required: true)!,
                Gate = loader.Matrix(TensorNames.FfnGate(l), nEmbd, hp.FeedForwardLength),
                Up = loader.Matrix(TensorNames.FfnUp(l), nEmbd, hp.FeedForwardLength),
                Down = loader.Matrix(TensorNames.FfnDown(l), hp.FeedForwardLength, nEmbd),
                GateBias = loader.Vector(TensorNames.FfnGateBias(l), hp.FeedForwardLength, required: false),
                UpBias = loader.Vector(TensorNames.FfnUpBias(l), hp.FeedForwardLength, required: false),
                DownBias = loader.Vector(TensorNames.FfnDownBias(l), nEmbd, required: false),
            };
        }
        return new TransformerWeights
        {
            TokenEmbedding = embedding,
            OutputNorm = loader.Vector(TensorNames.OutputNorm, nEmbd, required: true)!,
            Output = output,
            RopeFreqs = loader.Vector(TensorNames.RopeFreqs, hp.RopeDimensions / 2, required: false),
            Layers = layers,
        };
    }

    private sealed unsafe class Loader(GgufFile file)
    {
        public WeightMatrix Matrix(string name, int columns, int rows)
        {
            var info = Find(name);
            CheckShape(info, [columns, rows]);
            return new WeightMatrix(name, info.Type, columns, rows, file.GetTensorPointer(info));
        }

        /// <summary>A 1-D tensor (norm weight or bias), converted to f32 once.</summary>
        public float[]? Vector(string name, int length, bool required)
        {
            if (!file.TryGetTensor(name, out var info))
                return required ? throw Missing(name) : null;
            CheckShape(info, [length]);
            QuantTypes.RequireSupported(info.Type);
            var values = new float[length];
            QuantReference.Dequantize(info.Type, file.GetTensorData(info), values);
            return values;
        }

        private GgufTensorInfo Find(string name) => file.TryGetTensor(name, out var info) ? info : throw Missing(name);

        private static GgufFormatException Missing(string name) => new($"required tensor '{name}' is missing from the model");

        private static void CheckShape(GgufTensorInfo info, long[] expected)
        {
            if (!info.Shape.AsSpan().SequenceEqual(expected))
                throw new GgufFormatException(
                    $"tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected)}]");
        }
    }
}
