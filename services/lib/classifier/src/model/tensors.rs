//! A batch of prepared texts as the session's input tensors, padded to its longest member.

use std::borrow::Cow;

use ort::session::SessionInputValue;
use ort::value::Tensor;

use super::{Model, Prepared};
use crate::error::ClassifierError;
use crate::manifest::ModelKind;

/// Named input tensors of one run.
pub(super) type Inputs = Vec<(Cow<'static, str>, SessionInputValue<'static>)>;

impl Model {
    /// The input tensors for `batch`: token ids and mask (and, when the manifest names a
    /// `text` input, the texts they were made from, row for row), or the texts themselves.
    pub(super) fn tensors(&self, batch: &[&Prepared]) -> Result<Inputs, ClassifierError> {
        let m = &self.manifest;
        let failed = |e: ort::Error| ClassifierError::Inference {
            model: m.name.clone(),
            detail: e.to_string(),
        };
        match m.kind {
            ModelKind::TokenIds => {
                let width = batch.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
                let mut ids = vec![0_i64; batch.len() * width];
                let mut mask = vec![0_i64; batch.len() * width];
                for (row, item) in batch.iter().enumerate() {
                    if let Prepared::Tokens {
                        ids: i, mask: k, ..
                    } = item
                    {
                        ids[row * width..row * width + i.len()].copy_from_slice(i);
                        mask[row * width..row * width + k.len()].copy_from_slice(k);
                    }
                }
                let shape = [batch.len(), width];
                let mut inputs: Inputs = vec![
                    (
                        name_of(&m.inputs.input_ids),
                        Tensor::from_array((shape, ids)).map_err(failed)?.into(),
                    ),
                    (
                        name_of(&m.inputs.attention_mask),
                        Tensor::from_array((shape, mask)).map_err(failed)?.into(),
                    ),
                ];
                if m.inputs.text.is_some() {
                    let texts = self.token_texts(batch)?;
                    let tensor = Tensor::from_string_array(([batch.len()], texts.as_slice()))
                        .map_err(failed)?;
                    inputs.push((name_of(&m.inputs.text), tensor.into()));
                }
                Ok(inputs)
            }
            ModelKind::String => {
                let texts: Vec<String> = batch
                    .iter()
                    .map(|p| match p {
                        Prepared::Text(t) => t.clone(),
                        Prepared::Tokens { .. } => String::new(),
                    })
                    .collect();
                let tensor =
                    Tensor::from_string_array(([batch.len()], texts.as_slice())).map_err(failed)?;
                Ok(vec![(name_of(&m.inputs.text), tensor.into())])
            }
        }
    }

    /// The text of every row of a token batch. An item prepared without its text (by a
    /// model that has no `text` input) cannot be scored by one that has.
    /// (Owned copies: ort's string tensor takes `'static` data.)
    fn token_texts(&self, batch: &[&Prepared]) -> Result<Vec<String>, ClassifierError> {
        batch
            .iter()
            .map(|p| match p {
                Prepared::Tokens {
                    text: Some(text), ..
                } => Ok(text.clone()),
                _ => Err(ClassifierError::ModelMismatch {
                    model: self.manifest.name.clone(),
                    detail: "the model reads a text input, and an item was prepared without \
                             its text (prepare it with this model)"
                        .into(),
                }),
            })
            .collect()
    }
}

fn name_of(name: &Option<String>) -> Cow<'static, str> {
    Cow::Owned(name.clone().unwrap_or_default())
}
